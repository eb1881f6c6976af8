import APModel
import Planning

extension Scenario {
  /// The state `apvirt plan` and `apvirt apply` reach: the masks and the mdevs' matrices, with
  /// the guests' names for the mdevs they use.
  public var planTarget: PlanTarget {
    var names: [String: String] = [:]
    for g in guests { if let m = g.mdev { names[m] = g.name } }
    return PlanTarget(
      apmask: apmask, aqmask: aqmask,
      mdevs: Dictionary(uniqueKeysWithValues: mdevs.map { ($0.uuid, $0.matrix) }), guestNames: names)
  }
}
