/// A directory of the virtual sysfs: named children (directories, symlinks, attributes bound to
/// an owner) and attribute groups bound to owners.
///
/// Not thread-safe: the tree is one piece of the state that its owner guards with one lock.
public final class SysfsDirectory {
  enum Child {
    case directory(SysfsDirectory)
    case symlink(String)
    case attribute(SysfsAttribute, OwnerReference)
  }

  /// The object an attribute is bound to: its owner's token, held weakly (the owner holds its
  /// directory, so a strong reference back would keep both alive forever), or, for an attribute
  /// a provider computed for one lookup, the owner itself. An attribute whose owner is gone no
  /// longer exists.
  ///
  /// The weak reference is to the token, never to the owner: the owner (a device, a driver) is
  /// then an object no weak reference points at, whose every retain and release (and a store
  /// makes several) takes the runtime's fast path instead of its side table's.
  struct OwnerReference {
    weak var token: SysfsOwnerToken?
    var held: AnyObject?

    /// The owner by its token, which tells `journal` when it goes.
    init(_ owner: some SysfsOwner, boundIn journal: SysfsJournal) {
      let t = owner.sysfsOwnerToken
      t.bound(in: journal)
      token = t
      held = nil
    }

    init(holding owner: AnyObject) {
      token = nil
      held = owner
    }

    var object: AnyObject? {
      if let held { return held }
      return token?.owner
    }

    var isAlive: Bool { held != nil || token != nil }
  }

  public let name: String
  public private(set) weak var parent: SysfsDirectory?
  private(set) var children: [String: Child] = [:]
  private(set) var groups: [(group: SysfsAttributeGroup, owner: OwnerReference)] = []
  /// The children computed from their owner's tables (see ``SysfsChildProvider``), bound to an
  /// owner by its token, held weakly as attribute groups are: nil when there are none.
  private(set) var provided: (provider: any SysfsChildProvider, owner: OwnerReference)?
  /// Counts the changes to the stored children, the groups and the provider: a child found
  /// while it is unchanged is found again (see ``child(_:stable:)``), so a node can keep it.
  /// Unchecked for exclusivity: it is only ever read, or bumped by `&+= 1`, under the tree's
  /// lock, never held across another access, and the runtime's check on every bump (a boot of the
  /// full architecture bumps it for each link and group) made boot and bulk add 3-5% slower.
  @exclusivity(unchecked) private(set) var version: UInt64 = 0
  /// Where removals are recorded, shared by the whole tree.
  let journal: SysfsJournal

  /// The absolute path, `/devices/ap/card05`: known once, since a directory never moves (a
  /// removed one leaves the tree whole).
  public let path: String
  /// How deep the directory is: `/` is 0, `/devices/ap` 2.
  let depth: Int
  /// The tree's ``SysfsJournal/detachments`` when the directory was last found attached (see
  /// ``SysfsTree/isAttached(_:)``).
  var attachedAsOf: UInt64 = 0

  init(name: String, parent: SysfsDirectory?, journal: SysfsJournal) {
    self.name = name
    self.parent = parent
    self.journal = journal
    if let parent {
      depth = parent.depth + 1
      path = parent.path == "/" ? "/" + name : parent.path + "/" + name
    } else {
      depth = 0
      path = "/"
    }
  }

  /// A number unique among the directories alive, used as the inode number.
  public var serial: UInt64 { UInt64(UInt(bitPattern: ObjectIdentifier(self).hashValue)) }

  /// The child directory `name`, created if missing.
  @discardableResult
  public func directory(_ name: String) -> SysfsDirectory {
    if case .directory(let d)? = children[name] { return d }
    let d = SysfsDirectory(name: name, parent: self, journal: journal)
    children[name] = .directory(d)
    version &+= 1
    return d
  }

  /// The existing child directory `name`.
  public func existingDirectory(_ name: String) -> SysfsDirectory? {
    if case .directory(let d)? = children[name] { return d }
    return nil
  }

  /// Adds a symlink whose target is relative to this directory (`../../devices/ap/card05`).
  public func symlink(_ name: String, to target: String) {
    version &+= 1
    // One hash of the name: the replaced child, if any, comes back from the update.
    guard let replaced = children.updateValue(.symlink(target), forKey: name) else { return }
    journal.removed(self, name)
    // A directory replaced by a link: no path reaches it any more (it keeps its parent and its
    // subtree).
    if case .directory = replaced { journal.detachments &+= 1 }
  }

  /// The names from the root down to this directory, by its parents (no string splitting).
  var components: [String] {
    var names = [String](repeating: "", count: depth)
    var d: SysfsDirectory? = self
    var i = depth
    while let cur = d, i > 0 {
      i -= 1
      names[i] = cur.name
      d = cur.parent
    }
    return names
  }

  /// Adds a symlink to the directory `target`, computed from the two ends by their parents
  /// (``linkTarget(to:)``): no path is split, which an mdev's creation does six times.
  public func symlink(_ name: String, to target: SysfsDirectory) {
    symlink(name, to: linkTarget(to: target))
  }

  /// Adds a symlink to the absolute path `target`, written relative to this directory through
  /// their common ancestor, as kernfs writes its links: `../../../bus/ap/drivers/cex4card` from
  /// `/devices/ap/card05`, `../mdev_supported_types/vfio_ap-passthrough` from an mdev.
  public func symlink(_ name: String, toAbsolute target: String) {
    symlink(name, components: target.split(separator: "/").map(String.init))
  }

  func symlink(_ name: String, components to: [String]) {
    symlink(name, to: linkTarget(components: to))
  }

  func childPath(_ name: String) -> String {
    path == "/" ? "/" + name : path + "/" + name
  }

  /// Adds one attribute bound to `owner`.
  public func attribute(_ attribute: SysfsAttribute, owner: some SysfsOwner) {
    let replaced = children.updateValue(
      .attribute(attribute, OwnerReference(owner, boundIn: journal)), forKey: attribute.name)
    version &+= 1
    if case .directory? = replaced { journal.detachments &+= 1 }
  }

  /// Binds a group of attributes to `owner`.
  public func addGroup(_ group: SysfsAttributeGroup, owner: some SysfsOwner) {
    groups.append((group, OwnerReference(owner, boundIn: journal)))
    version &+= 1
  }

  /// Unbinds a group.
  public func removeGroup(_ group: SysfsAttributeGroup) {
    // By index: a closure over the elements would copy each owner token's weak reference.
    var found = false
    var i = groups.count
    while i > 0 {
      i -= 1
      if groups[i].group === group {
        groups.remove(at: i)
        found = true
      }
    }
    guard found else { return }
    version &+= 1
    if journal.recording { for a in group.attributes { journal.removed(self, a.name) } }
  }

  public func hasGroup(_ group: SysfsAttributeGroup) -> Bool {
    for i in groups.indices where groups[i].group === group { return true }
    return false
  }

  /// Serves children computed by `provider` from `owner`'s tables besides the stored ones: a
  /// directory has at most one provider, bound for as long as `owner` lives (a second binding
  /// replaces the first). A stored child shadows a computed one of the same name, and both
  /// shadow an attribute of a group.
  public func provideChildren(_ provider: any SysfsChildProvider, owner: some SysfsOwner) {
    provided = (provider, OwnerReference(owner, boundIn: journal))
    version &+= 1
  }

  /// The computed child `name` has just vanished from its owner's tables (a device removed, a
  /// driver unbound): recorded in the removal journal as a stored child's removal is, so that a
  /// cache of the tree forgets it. The owner calls it, since the tree cannot see its tables
  /// change.
  public func computedChildRemoved(_ name: @autoclosure () -> String) {
    // The name is formatted only when recorded (`05.0004` costs a formatting per device).
    guard journal.recording else { return }
    journal.removed(self, name())
  }

  /// The computed child `name` of this directory's computed child directory `child` has just
  /// vanished, where the owner never made that directory (no one looked it up: see
  /// ``makeComputedDirectory(_:)``): journaled by its path as ``computedChildRemoved(_:)``
  /// journals it, without making the directory.
  public func computedChildRemoved(
    _ name: @autoclosure () -> String, inChild child: @autoclosure () -> String
  ) {
    guard journal.recording else { return }
    journal.removed(childPath(child() + "/" + name()))
  }

  /// Whether removals are being journaled: an owner that would do work only to tell the journal
  /// (name the attributes of a group its tables no longer serve) asks first.
  public var recordsRemovals: Bool { journal.recording }

  /// The computed child directory `d` has just left the owner's tables: journaled as
  /// ``computedChildRemoved(_:)``, and detached as ``remove(_:)`` detaches a stored one, so that
  /// a node kept for it falls back to its path.
  public func computedDirectoryRemoved(_ d: SysfsDirectory) {
    journal.removed(self, d.name)
    d.parent = nil
    journal.detachments &+= 1
  }

  /// Creates the directory `name` that a provider serves as a child of this one: the tree
  /// stores it nowhere, its owner keeps it in its tables (``SysfsProvidedChild/directory(_:)``).
  public func makeComputedDirectory(_ name: String) -> SysfsDirectory {
    SysfsDirectory(name: name, parent: self, journal: journal)
  }

  /// The target of a link from this directory to the directory `target`, relative through their
  /// common ancestor as the stored links are written: what a provider returns for a computed
  /// link.
  public func linkTarget(to target: SysfsDirectory) -> String {
    // The common ancestor by parents and depths, without splitting either path: a listing of
    // `/sys/bus/ap/devices` asks once per device. A directory out of the tree goes by names.
    var a = self
    var b = target
    var up = 0
    while a !== b {
      let da = a.depth
      let db = b.depth
      if da >= db {
        guard let p = a.parent else { return linkTarget(components: target.components) }
        a = p
        up += 1
      }
      if db >= da {
        guard let p = b.parent else { return linkTarget(components: target.components) }
        b = p
      }
    }
    var result = String(repeating: "../", count: up)
    let below = target.path.utf8.dropFirst(a.depth == 0 ? 1 : a.path.utf8.count + 1)
    result += Substring(below)
    return result
  }

  /// The target of a link from this directory to the absolute path `target`, as
  /// ``symlink(_:toAbsolute:)`` writes it.
  public func linkTarget(toAbsolute target: String) -> String {
    linkTarget(components: target.split(separator: "/").map(String.init))
  }

  /// The relative target from this directory to the absolute path whose names are `to`: as
  /// many `../` as take it up to the common ancestor, then the rest of `to`.
  func linkTarget(components to: [String]) -> String {
    let from = components
    var common = 0
    while common < from.count && common < to.count && from[common] == to[common] { common += 1 }
    var target = String(repeating: "../", count: from.count - common)
    for (i, part) in to[common...].enumerated() {
      if i > 0 { target += "/" }
      target += part
    }
    return target
  }

  /// Removes a child of any kind.
  public func remove(_ name: String) {
    guard let c = children[name] else { return }
    journal.removed(self, name)
    if case .directory(let d) = c {
      d.parent = nil
      journal.detachments &+= 1
    }
    children[name] = nil
    version &+= 1
  }

  public func contains(_ name: String) -> Bool { child(name) != nil }

  func child(_ name: String) -> Child? {
    var stable = false
    return child(name, stable: &stable)
  }

  /// The child `name`; `stable` tells whether the same child is found for as long as
  /// ``version`` stays the same and, for an attribute, its owner lives: a stored child, or a
  /// group's attribute in a directory without a provider (whose computed children, which would
  /// shadow it, change with their owner's tables, unseen here).
  func child(_ name: String, stable: inout Bool) -> Child? {
    if let c = children[name] {
      if case .attribute(_, let o) = c, !o.isAlive { return nil }
      stable = true
      return c
    }
    if let p = provided, let owner = p.owner.object {
      if let c = p.provider.child(name, of: owner, in: self) {
        switch c {
        case .directory(let d): return .directory(d)
        case .symlink(let target): return .symlink(target)
        }
      }
      // The computed groups, the latest first as the bound ones below.
      let computed = p.provider.groups(of: owner, in: self)
      var i = computed.count
      while i > 0 {
        i -= 1
        if let a = computed[i].group.byName[name] {
          return .attribute(a, OwnerReference(holding: computed[i].owner))
        }
      }
    }
    // The latest group first, by index (not copying each owner token's weak reference).
    var i = groups.count
    while i > 0 {
      i -= 1
      if let a = groups[i].group.byName[name], groups[i].owner.isAlive {
        stable = provided == nil
        return .attribute(a, groups[i].owner)
      }
    }
    return nil
  }

  /// Names of all children, sorted.
  public var entryNames: [String] {
    var names = Set(children.keys)
    if let p = provided, let owner = p.owner.object {
      names.formUnion(p.provider.childNames(of: owner, in: self))
      for g in p.provider.groups(of: owner, in: self) { for a in g.group.attributes { names.insert(a.name) } }
    }
    for g in groups where g.owner.isAlive { for a in g.group.attributes { names.insert(a.name) } }
    return names.filter { child($0) != nil }.sorted()
  }
}

/// What a ``SysfsChildProvider`` serves for one name: a link (its target, relative to the
/// directory, as ``SysfsDirectory/linkTarget(to:)`` writes it) or a directory its owner keeps.
public enum SysfsProvidedChild {
  case symlink(String)
  case directory(SysfsDirectory)
}

/// The children of a directory computed from the tables of the object that owns them, when they
/// are looked up, as kernfs shows the kobjects of a kset: the large, regular parts of the tree
/// (`/sys/bus/ap/devices`, a driver's device links, a device's `driver` and `subsystem`) are
/// views of the AP bus's tables instead of one stored node each.
///
/// A provider is bound to a directory with an owner (``SysfsDirectory/provideChildren(_:owner:)``)
/// and is given that owner back, so one stateless provider serves every directory of a kind, as
/// an attribute group does. Every tree operation sees a computed child as it would see the same
/// child stored: lookup, listing (merged with the stored names, sorted), readlink, stat (a link's
/// inode comes from its directory and target). What it cannot see is a child vanishing: the
/// owner tells the directory (``SysfsDirectory/computedChildRemoved(_:)``), for the removal
/// journal.
public protocol SysfsChildProvider: AnyObject {
  /// The child `name` of `owner`'s directory `directory`, or nil when there is none.
  func child(_ name: String, of owner: AnyObject, in directory: SysfsDirectory) -> SysfsProvidedChild?
  /// The names of every child that ``child(_:of:in:)`` serves now.
  func childNames(of owner: AnyObject, in directory: SysfsDirectory) -> [String]
  /// The attribute groups the directory shows now, each with the object its attributes are
  /// given, from the first bound to the last (a later one shadows an earlier one, as with
  /// ``SysfsDirectory/addGroup(_:owner:)``): a device's attributes computed from its bus's and
  /// its driver's tables, so that a device nobody looks at costs no directory of its own.
  func groups(of owner: AnyObject, in directory: SysfsDirectory) -> [SysfsBoundGroup]
}

extension SysfsChildProvider {
  /// A provider of links and directories only.
  public func groups(of owner: AnyObject, in directory: SysfsDirectory) -> [SysfsBoundGroup] { [] }
}

/// An attribute group and the object its attributes are given, as a ``SysfsChildProvider``
/// computes it: held only while a lookup uses it.
public struct SysfsBoundGroup {
  public let group: SysfsAttributeGroup
  public let owner: AnyObject

  public init(_ group: SysfsAttributeGroup, owner: AnyObject) {
    self.group = group
    self.owner = owner
  }
}

/// The paths removed from a tree since they were last taken: what a cache of the tree (the
/// kernel's dentry cache, for a tree served through FUSE) must forget.
///
/// Bounded, so that a consumer that stops taking (or takes rarely while the tree churns) cannot
/// make it grow: a path removed again before it was taken is kept once (an apmask flip removes
/// the same `driver` links every time), and past ``capacity`` distinct paths the oldest half is
/// dropped and counted in ``dropped``. A dropped invalidation costs little: a FUSE client caches
/// an entry only for its entry timeout (a second in the daemon), then looks again.
public final class SysfsJournal {
  // Each store takes the removed paths: the journal is used under its tree's lock, one access
  // at a time, unchecked for exclusivity so that a store pays no runtime check for it.
  @exclusivity(unchecked) private(set) var paths: [String] = []
  @exclusivity(unchecked) private var pending: Set<String> = []
  /// The most distinct paths kept.
  public var capacity = 16384
  /// Paths dropped because the journal was full.
  public private(set) var dropped = 0
  /// Whether removals are recorded at all (off until someone takes them, so that a tree nobody
  /// serves does not grow a list).
  @exclusivity(unchecked) var recording = false
  /// How many directories were taken out of the tree (removed, or replaced by another child):
  /// a directory found attached since the last detachment is still attached.
  var detachments: UInt64 = 1
  /// How many owners of attributes bound in the tree have gone (see ``SysfsOwnerToken``): an
  /// owner found alive since the count last moved is still alive.
  var ownersGone: UInt64 = 0

  init() {}

  /// A child of `directory` was removed; its path is built only when recorded.
  func removed(_ directory: SysfsDirectory, _ name: String) {
    guard recording else { return }
    removed(directory.childPath(name))
  }

  func removed(_ path: String) {
    guard recording, pending.insert(path).inserted else { return }
    paths.append(path)
    if paths.count > capacity {
      let n = paths.count - capacity / 2
      for p in paths[..<n] { pending.remove(p) }
      paths.removeFirst(n)
      dropped += n
    }
  }

  func take() -> [String] {
    defer {
      paths = []
      pending = []
    }
    return paths
  }
}

/// An object that sysfs attributes, groups and providers are bound to (a device, a driver, a
/// bus): it holds the ``SysfsOwnerToken`` that its directories reference weakly in its place,
/// and which goes when it goes. Conform with
/// `public private(set) lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)`, and let no one
/// else hold the token: a token alive is what says its owner is.
public protocol SysfsOwner: AnyObject {
  var sysfsOwnerToken: SysfsOwnerToken { get }
}

/// What a directory holds of an attribute's owner: a weak reference to this token, which the
/// owner alone holds, instead of a weak reference to the owner. A weak reference gives its
/// object a side table, and every retain and release of an object with one takes the runtime's
/// slow path; the token takes that cost (one weak load per lookup) so that the owner, which the
/// attributes' callbacks and the kernel's own code retain and release many times per store,
/// does not. The token reaches its owner by an unowned (checked) reference: while the token
/// lives, its owner has not been freed.
///
/// A token also counts its owner's going in the removal journal of each tree it is bound in
/// (``SysfsJournal/ownersGone``): a ``SysfsNode`` that found an attribute keeps its owner by an
/// unchecked reference, valid while that count has not moved, so that a request on a known node
/// reads no weak reference at all.
public final class SysfsOwnerToken {
  unowned let owner: AnyObject
  /// The journal of the tree its owner's attributes are bound in, and of any other (an owner
  /// bound in two trees, which nothing here does, but nothing forbids).
  private var journal: SysfsJournal?
  private var moreJournals: [SysfsJournal] = []

  public init(owner: AnyObject) {
    self.owner = owner
  }

  func bound(in j: SysfsJournal) {
    if journal == nil {
      journal = j
    } else if journal !== j && !moreJournals.contains(where: { $0 === j }) {
      moreJournals.append(j)
    }
  }

  deinit {
    // The owner is going (it held the token alone): under the lock that guards its trees.
    journal?.ownersGone &+= 1
    for j in moreJournals { j.ownersGone &+= 1 }
  }
}
