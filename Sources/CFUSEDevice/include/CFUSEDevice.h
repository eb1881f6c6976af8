// The read(2) and write(2) of a /dev/fuse connection as the bare system calls, and the CPUs a
// serving thread may run on.
//
// glibc's read and write are cancellation points: in a process with more than one thread each
// call marks the thread asynchronously cancellable before the system call and not after it, two
// atomic compare-and-swaps on the thread's cancellation state. No Swift thread is ever
// cancelled, and a FUSE server makes two of these calls per request (its read of the request
// and its write of the reply), so its serving threads make the system calls themselves.
// syscall(2) is no cancellation point; it returns -1 with errno set, as read and write do.
// Swift cannot call the variadic syscall(2) itself: hence this header.
#ifndef CFUSEDEVICE_H
#define CFUSEDEVICE_H

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static inline ssize_t cfuse_read(int fd, void *buffer, size_t count) {
  return (ssize_t)syscall(SYS_read, fd, buffer, count);
}

static inline ssize_t cfuse_write(int fd, const void *buffer, size_t count) {
  return (ssize_t)syscall(SYS_write, fd, buffer, count);
}

// The CPUs the calling thread may run on, or -1 when that cannot be told: sched_getaffinity(2)
// as the bare system call (which returns the bytes of the mask it wrote), since glibc declares
// its wrapper only under _GNU_SOURCE. A mask of 1024 CPUs, the size of glibc's cpu_set_t.
static inline int cfuse_cpus_available(void) {
  unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
  long n = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
  if (n < 0) return -1;
  int count = 0;
  for (long i = 0; i < n / (long)sizeof mask[0]; i++) count += __builtin_popcountl(mask[i]);
  return count;
}

#endif
