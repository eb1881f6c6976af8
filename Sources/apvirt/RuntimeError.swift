import APModel
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A failure while doing what the command line asked, as opposed to a command line that is
/// wrong. ArgumentParser prints it as `Error: TEXT` and exits 1 without the usage text, as
/// virsh, mdevctl and qemu do for their runtime failures; a `ValidationError` (exit 64, with the
/// usage) is kept for arguments that cannot be right.
struct RuntimeError: Error, CustomStringConvertible {
  var description: String

  init(description: String) { self.description = description }
  init(_ description: String) { self.description = description }

  /// `WHAT: strerror(errno)`, for a failed system call.
  static func errno(_ what: String, _ code: Int32 = Glibc.errno) -> RuntimeError {
    RuntimeError("\(what): \(String(cString: strerror(code)))")
  }
}

/// The system's words for an error. Foundation wraps a failed system call in a Cocoa error whose
/// text is not the system's (`The file doesn't exist.`, `NSCocoaErrorDomain error 256`): the
/// POSIX error underneath, or one implied by the Cocoa code, is named by `strerror` instead, so
/// messages read as the C tools' do (`No such file or directory`).
func systemReason(_ error: any Error) -> String {
  if let e = error as? RuntimeError { return e.description }
  let ns = error as NSError
  if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
  if let under = ns.userInfo[NSUnderlyingErrorKey] as? NSError, under.domain == NSPOSIXErrorDomain {
    return String(cString: strerror(Int32(under.code)))
  }
  if ns.domain == NSCocoaErrorDomain {
    switch CocoaError.Code(rawValue: ns.code) {
    case .fileNoSuchFile, .fileReadNoSuchFile: return String(cString: strerror(ENOENT))
    case .fileReadNoPermission, .fileWriteNoPermission: return String(cString: strerror(EACCES))
    case .fileWriteFileExists: return String(cString: strerror(EEXIST))
    case .fileReadInapplicableStringEncoding, .fileReadCorruptFile:
      return "not UTF-8 text"
    default: break
    }
  }
  return "\(error)"
}

/// Reads a whole regular file as UTF-8 text, with the system's reason when it cannot
/// (`/etc: Is a directory`, `missing.xml: No such file or directory`).
func readTextFile(_ path: String) throws(RuntimeError) -> String {
  let bytes: [UInt8]
  do throws(Errno) {
    bytes = try FileContents.read(path)
  } catch {
    throw .errno(path, error.rawValue)
  }
  guard let text = String(validating: bytes, as: UTF8.self) else {
    throw RuntimeError("\(path): not UTF-8 text")
  }
  return text
}
