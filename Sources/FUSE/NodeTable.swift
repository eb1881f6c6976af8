/// The kernel's view of the file system as node ids: each id the session handed out in a LOOKUP
/// reply stands for a ``FileNode`` (a path and what the file system resolved it to), and lives
/// until the kernel forgets it as often as it looked it up.
struct NodeTable {
  struct Node {
    var node: FileNode
    var lookups: UInt64
    var path: String { node.path }
  }

  static let rootID = NodeID.root
  private var nodes: [NodeID: Node]
  private var ids: [String: NodeID] = ["/": rootID]
  private var nextID: UInt64 = 2
  /// The paths in the table by their parent's path, so that the nodes below a removed directory
  /// can be found without walking the whole table.
  private var children: [String: Set<String>] = [:]

  init(root: FileNode = .root) {
    nodes = [Self.rootID: Node(node: root, lookups: 1)]
  }

  func path(of id: NodeID) -> String? { nodes[id]?.node.path }

  /// What `id` stands for.
  func node(_ id: NodeID) -> FileNode? { nodes[id]?.node }

  func id(of path: String) -> NodeID? { ids[path] }

  /// The id for `path`, counting one more lookup (a path-addressed node).
  mutating func lookUp(_ path: String) -> NodeID { lookUp(FileNode(path: path)) }

  /// The id for `node`'s path, counting one more lookup. A known id now stands for `node`, the
  /// latest resolution of its path (a directory removed and made again under the same name).
  mutating func lookUp(_ node: FileNode) -> NodeID {
    if let id = ids[node.path] {
      nodes[id]!.lookups += 1
      nodes[id]!.node = node
      return id
    }
    let id = NodeID(nextID)
    nextID += 1
    nodes[id] = Node(node: node, lookups: 1)
    ids[node.path] = id
    children[Self.parent(of: node.path), default: []].insert(node.path)
    return id
  }

  /// FORGET: drops `count` lookups; the id goes when none are left.
  mutating func forget(_ id: NodeID, _ count: UInt64) {
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
