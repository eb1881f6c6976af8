import HostKernel

/// The daemon's dmesg file beside the mount (`/run/apvirt/dmesg`): ``KernelLogFile``, which
/// appends what each store logged and keeps the file bounded. It lives in HostKernel so that the
/// benchmarks measure the same code.
typealias DmesgSync = KernelLogFile
