import SystemPackage

/// One sysfs attribute: a name, a mode, and the `show` and `store` callbacks of its owner.
///
/// Like the kernel's `struct device_attribute`, one attribute value serves every object of a
/// kind: the callbacks receive the owning object (a card, a queue, an mdev) when a directory
/// binds the attribute to it. That keeps 65,536 queue directories cheap: they share one
/// ``SysfsAttributeGroup`` instead of carrying a million closures.
public final class SysfsAttribute: @unchecked Sendable {
  public let name: String
  /// Permission bits, `0o444`, `0o200`, `0o644`.
  public let mode: UInt16
  let show: ((AnyObject) throws(Errno) -> String)?
  let store: ((AnyObject, [UInt8]) throws(Errno) -> Void)?

  /// An attribute whose callbacks take an `Owner`. Binding it to an object of another type is a
  /// programming error.
  public init<Owner: AnyObject>(
    _ name: String, mode: UInt16, of ownerType: Owner.Type = Owner.self,
    show: ((Owner) throws(Errno) -> String)? = nil,
    store: ((Owner, [UInt8]) throws(Errno) -> Void)? = nil
  ) {
    self.name = name
    self.mode = mode
    // The owner is cast without the runtime's dynamic cast on every read and store: a debug
    // build checks it (`unsafeDowncast`), as binding to another type is a programming error.
    if let show {
      self.show = { (o: AnyObject) throws(Errno) -> String in try show(unsafeDowncast(o, to: Owner.self)) }
    } else {
      self.show = nil
    }
    if let store {
      self.store = { (o: AnyObject, b: [UInt8]) throws(Errno) in
        try store(unsafeDowncast(o, to: Owner.self), b)
      }
    } else {
      self.store = nil
    }
  }

  /// A read-only attribute (`0444`).
  public static func readOnly<Owner: AnyObject>(
    _ name: String, _ show: @escaping (Owner) throws(Errno) -> String
  ) -> SysfsAttribute {
    SysfsAttribute(name, mode: 0o444, show: show)
  }

  /// A write-only attribute (`0200`).
  public static func writeOnly<Owner: AnyObject>(
    _ name: String, _ store: @escaping (Owner, [UInt8]) throws(Errno) -> Void
  ) -> SysfsAttribute {
    SysfsAttribute(name, mode: 0o200, show: nil, store: store)
  }

  /// A read-write attribute (`0644`).
  public static func readWrite<Owner: AnyObject>(
    _ name: String, show: @escaping (Owner) throws(Errno) -> String,
    store: @escaping (Owner, [UInt8]) throws(Errno) -> Void
  ) -> SysfsAttribute {
    SysfsAttribute(name, mode: 0o644, show: show, store: store)
  }

  public var isReadable: Bool { show != nil && mode & 0o444 != 0 }
  public var isWritable: Bool { store != nil && mode & 0o222 != 0 }
}

/// A set of attributes that a directory binds to one owner at a time, like the kernel's
/// `attribute_group`: a driver adds its group when it binds a device and removes it on unbind.
public final class SysfsAttributeGroup: @unchecked Sendable {
  public let attributes: [SysfsAttribute]
  let byName: [String: SysfsAttribute]

  public init(_ attributes: [SysfsAttribute]) {
    self.attributes = attributes
    var m: [String: SysfsAttribute] = [:]
    for a in attributes { m[a.name] = a }
    byName = m
  }

  /// The group without the attributes named: what an older kernel's group lacks.
  public func without(_ names: Set<String>) -> SysfsAttributeGroup {
    names.isEmpty ? self : SysfsAttributeGroup(attributes.filter { !names.contains($0.name) })
  }
}
