import APModel
import HostKernel
import SystemPackage

/// Runs shell-like steps against a host kernel and prints them as a terminal transcript:
/// `# echo 5 > /sys/.../assign_adapter`, then what the shell would print, errno text included.
///
/// Paths are written as on a real host (`/sys/...`); the kernel's tree is rooted at `/`.
struct Transcript {
  let kernel: HostKernel
  var output: String = ""
  /// Shell variables (`$uuid1`) shown in commands and expanded in paths.
  var variables: [(String, String)] = []

  init(kernel: HostKernel) { self.kernel = kernel }

  mutating func emit(_ line: String) { output += line + "\n" }

  mutating func comment(_ text: String) { emit("## " + text) }

  mutating func blank() { emit("") }

  mutating func set(_ name: String, _ value: String) {
    variables.append((name, value))
    emit("# \(name)=\(value)")
  }

  func expand(_ s: String) -> String {
    var r = s
    for (name, value) in variables.reversed() { r = r.replacingAll("$" + name, with: value) }
    return r
  }

  func sysPath(_ path: String) -> String {
    let p = expand(path)
    return p.hasPrefix("/sys/") ? String(p.dropFirst(4)) : p
  }

  /// `echo TEXT > PATH`: the shell writes TEXT and a newline.
  @discardableResult
  mutating func echo(_ text: String, _ path: String) -> Errno? {
    emit("# echo \(text) > \(path)")
    do {
      try kernel.sysfs.write(sysPath(path), Array((expand(text) + "\n").utf8))
      return nil
    } catch {
      emit("bash: echo: write error: \(error.description)")
      return error
    }
  }

  mutating func cat(_ path: String) {
    emit("# cat \(path)")
    do {
      output += try kernel.sysfs.readString(sysPath(path))
    } catch {
      emit("cat: \(path): \(error.description)")
    }
  }

  mutating func readlink(_ path: String) {
    emit("# readlink \(path)")
    do {
      emit(try kernel.sysfs.readlink(sysPath(path)))
    } catch {
      emit("readlink: \(path): \(error.description)")
    }
  }

  /// `dmesg | tail -n N`
  mutating func dmesgTail(_ n: Int) {
    emit("# dmesg | tail -n \(n)")
    let lines = kernel.log.dmesgText.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
    for l in lines.suffix(n) { emit(String(l)) }
  }
}

extension String {
  func replacingAll(_ target: String, with replacement: String) -> String {
    guard !target.isEmpty else { return self }
    var out = ""
    var rest = Substring(self)
    while let r = rest.firstRange(of: target) {
      out += rest[..<r.lowerBound] + replacement
      rest = rest[r.upperBound...]
    }
    return out + rest
  }
}
