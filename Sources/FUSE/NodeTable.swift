/// The kernel's view of the file system as node ids: each id the session handed out in a LOOKUP
/// reply names a path, and lives until the kernel forgets it as often as it looked it up.
struct NodeTable {
  struct Node {
    var path: String
    var lookups: UInt64
  }

  static let rootID: UInt64 = 1
  private var nodes: [UInt64: Node] = [rootID: Node(path: "/", lookups: 1)]
  private var ids: [String: UInt64] = ["/": rootID]
  private var nextID: UInt64 = 2
  /// The paths in the table by their parent's path, so that the nodes below a removed directory
  /// can be found without walking the whole table.
  private var children: [String: Set<String>] = [:]

  func path(of id: UInt64) -> String? { nodes[id]?.path }

  func id(of path: String) -> UInt64? { ids[path] }

  /// The id for `path`, counting one more lookup.
  mutating func lookUp(_ path: String) -> UInt64 {
    if let id = ids[path] {
      nodes[id]!.lookups += 1
      return id
    }
    let id = nextID
    nextID += 1
    nodes[id] = Node(path: path, lookups: 1)
    ids[path] = id
    children[Self.parent(of: path), default: []].insert(path)
    return id
  }

  /// FORGET: drops `count` lookups; the id goes when none are left.
  mutating func forget(_ id: UInt64, _ count: UInt64) {
    guard id != Self.rootID, var node = nodes[id] else { return }
    node.lookups = node.lookups > count ? node.lookups - count : 0
    if node.lookups == 0 {
      nodes[id] = nil
      ids[node.path] = nil
      let parent = Self.parent(of: node.path)
      children[parent]?.remove(node.path)
      if children[parent]?.isEmpty == true { children[parent] = nil }
    } else {
      nodes[id] = node
    }
  }

  var count: Int { nodes.count }

  /// The paths in the table below `path`, deepest first.
  func descendants(of path: String) -> [String] {
    var out: [String] = []
    func walk(_ p: String) {
      for c in children[p] ?? [] {
        walk(c)
        out.append(c)
      }
    }
    walk(path)
    return out
  }

  /// `/a/b` for `/a/b/c`, `/` for `/a`.
  static func parent(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
    return String(path[..<slash])
  }

  static func join(_ parent: String, _ name: String) -> String {
    parent == "/" ? "/" + name : parent + "/" + name
  }
}
