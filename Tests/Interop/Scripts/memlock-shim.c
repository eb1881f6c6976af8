#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>

/* Test-only: root on these machines lacks CAP_SYS_RESOURCE and its hard RLIMIT_MEMLOCK is
   8 MiB, so libvirt's raise of the emulator's locked-memory limit (RAM + 1 GiB, for every VFIO
   hostdev) fails. This lets exactly that call pass, and only when the capability is missing. */
static int lacks_sys_resource(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long long eff = 0;
  if (!f) return 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "CapEff: %llx", &eff) == 1) break;
  fclose(f);
  return !(eff & (1ULL << 24));
}

static int pass(int rc, int resource, const struct rlimit *new_limit) {
  if (rc != 0 && errno == EPERM && resource == RLIMIT_MEMLOCK && new_limit && lacks_sys_resource()) {
    fprintf(stderr, "apvirt test shim: RLIMIT_MEMLOCK %llu allowed without CAP_SYS_RESOURCE\n",
            (unsigned long long)new_limit->rlim_max);
    errno = 0;
    return 0;
  }
  return rc;
}

int prlimit(pid_t pid, __rlimit_resource_t resource, const struct rlimit *n, struct rlimit *o) {
  int (*real)(pid_t, __rlimit_resource_t, const struct rlimit *, struct rlimit *) = dlsym(RTLD_NEXT, "prlimit");
  return pass(real(pid, resource, n, o), resource, n);
}
int prlimit64(pid_t pid, __rlimit_resource_t resource, const struct rlimit64 *n, struct rlimit64 *o) {
  return prlimit(pid, resource, (const struct rlimit *)n, (struct rlimit *)o);
}
int setrlimit(__rlimit_resource_t resource, const struct rlimit *n) {
  int (*real)(__rlimit_resource_t, const struct rlimit *) = dlsym(RTLD_NEXT, "setrlimit");
  return pass(real(resource, n), resource, n);
}
int setrlimit64(__rlimit_resource_t resource, const struct rlimit64 *n) {
  return setrlimit(resource, (const struct rlimit *)n);
}
