/// A table indexed by an APQN's 16-bit number that holds slots only up to the highest APQN ever
/// given a value, and reads nil beyond: nothing until the first value, 3,072 slots when the
/// highest is on the default machine's last adapter (0x0b), 65,536 only for adapter 0xff. A table
/// of all 65,536 filled at boot would keep half a megabyte of nil resident in every daemon.
struct APQNSlots<Element: AnyObject> {
  private var slots: ContiguousArray<Element?> = []

  subscript(apqn: Int) -> Element? {
    get { apqn < slots.count ? slots[apqn] : nil }
    set {
      if apqn >= slots.count {
        guard newValue != nil else { return }
        precondition(apqn <= 0xffff, "APQN out of range")
        slots.append(contentsOf: repeatElement(nil, count: apqn + 1 - slots.count))
      }
      slots[apqn] = newValue
    }
  }
}
