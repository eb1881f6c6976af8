/*
 * sysfs-ref: a minimal libfuse3 low-level server shaped like the part of apvirt's sysfs that
 * the FUSE benchmarks use. It is a benchmark fixture only (the reference that apvirt's own FUSE
 * server is measured against); apvirt itself never links libfuse.
 *
 * The tree (the same paths and depths as apvirt's, so that lookups cost the same):
 *
 *   /bus/ap/apmask                                    0644, the 67 bytes of apvirt's apmask
 *   /devices/vfio_ap/matrix/UUID/assign_domain        0200, takes a number 0-255 (kstrtoul)
 *   /devices/vfio_ap/matrix/UUID/matrix               0444, "05.0005\n"
 *
 * Every file reports st_size 4096 as sysfs does and is opened with direct_io, so that contents
 * are never cached and every read(2) is a READ request; read at offset 0 generates the content
 * anew. Entries and attributes are valid for 1 s (apvirt's daemon policy). The capabilities
 * asked for are apvirt's: atomic O_TRUNC, parallel dirops, dont_mask, big writes with
 * max_write 128 KiB (libfuse 3.14 cannot negotiate HANDLE_KILLPRIV_V2: see README.md). FLUSH is
 * answered ENOSYS (the kernel then stops sending it) and xattrs as sysfs: ENODATA in the
 * security and trusted namespaces, EOPNOTSUPP elsewhere, as apvirt answers.
 *
 * Threads: libfuse's multi-threaded loop with max_threads = max_idle_threads = --threads
 * (default 4, apvirt's): it starts one worker and adds one whenever none is idle, up to the
 * maximum, and keeps them; apvirt starts its 4 at once. One /dev/fuse descriptor (no clone_fd).
 *
 * Request counter: with --counts FILE, one 64-bit counter per opcode (index = opcode, 64 of
 * them) in FILE, mmap'ed shared, incremented atomically, so that the harness reads them without
 * a request of its own. The counts are also printed to stderr at exit.
 *
 * Usage: sysfs-ref MOUNTPOINT [--threads N] [--counts FILE] [--uuid UUID] [--xattr enosys]
 *                  [-o OPTS]
 * SYSFS_REF_DEBUG=1 prints the capabilities offered and asked for at INIT.
 * Build:  cc -O2 -o sysfs-ref sysfs-ref.c $(pkg-config --cflags --libs fuse3)
 */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Opcodes, as in <linux/fuse.h>. */
enum {
  OP_LOOKUP = 1, OP_FORGET = 2, OP_GETATTR = 3, OP_SETATTR = 4, OP_OPEN = 14, OP_READ = 15,
  OP_WRITE = 16, OP_STATFS = 17, OP_RELEASE = 18, OP_FSYNC = 20, OP_GETXATTR = 22,
  OP_LISTXATTR = 23, OP_FLUSH = 25, OP_INIT = 26, OP_OPENDIR = 27, OP_READDIR = 28,
  OP_RELEASEDIR = 29, OP_ACCESS = 34, OP_DESTROY = 38, OP_BATCH_FORGET = 42, OP_MAX = 64
};

static const char *op_names[OP_MAX] = {
  [OP_LOOKUP] = "lookup", [OP_FORGET] = "forget", [OP_GETATTR] = "getattr",
  [OP_SETATTR] = "setattr", [OP_OPEN] = "open", [OP_READ] = "read", [OP_WRITE] = "write",
  [OP_STATFS] = "statfs", [OP_RELEASE] = "release", [OP_FSYNC] = "fsync",
  [OP_GETXATTR] = "getxattr", [OP_LISTXATTR] = "listxattr", [OP_FLUSH] = "flush",
  [OP_INIT] = "init", [OP_OPENDIR] = "opendir", [OP_READDIR] = "readdir",
  [OP_RELEASEDIR] = "releasedir", [OP_ACCESS] = "access", [OP_DESTROY] = "destroy",
  [OP_BATCH_FORGET] = "batch_forget",
};

static uint64_t local_counts[OP_MAX];
static uint64_t *counts = local_counts;

static inline void count(int op) { __atomic_fetch_add(&counts[op], 1, __ATOMIC_RELAXED); }

/* The entry and attribute timeouts: apvirt's daemon's 1 s. */
static const double entry_timeout = 1.0, attr_timeout = 1.0;

/* The tree: inode numbers are indexes (1 = root). */
enum { N_ROOT = 1, N_BUS, N_AP, N_APMASK, N_DEVICES, N_VFIO_AP, N_MATRIX_DIR, N_MDEV,
       N_ASSIGN_DOMAIN, N_MATRIX, N_COUNT };

struct node {
  const char *name;
  fuse_ino_t parent;
  mode_t mode; /* with S_IFDIR or S_IFREG */
};

static char mdev_uuid[64] = "0b5e7c1a-fa57-4e5e-8b1d-5e7f5bad0005";

static struct node nodes[N_COUNT] = {
  [N_ROOT] = {"", N_ROOT, S_IFDIR | 0755},
  [N_BUS] = {"bus", N_ROOT, S_IFDIR | 0755},
  [N_AP] = {"ap", N_BUS, S_IFDIR | 0755},
  [N_APMASK] = {"apmask", N_AP, S_IFREG | 0644},
  [N_DEVICES] = {"devices", N_ROOT, S_IFDIR | 0755},
  [N_VFIO_AP] = {"vfio_ap", N_DEVICES, S_IFDIR | 0755},
  [N_MATRIX_DIR] = {"matrix", N_VFIO_AP, S_IFDIR | 0755},
  [N_MDEV] = {mdev_uuid, N_MATRIX_DIR, S_IFDIR | 0755},
  [N_ASSIGN_DOMAIN] = {"assign_domain", N_MDEV, S_IFREG | 0200},
  [N_MATRIX] = {"matrix", N_MDEV, S_IFREG | 0444},
};

static time_t boot_time;

/* --xattr enosys: answer GETXATTR with ENOSYS, as a libfuse server without the handler does; the
 * kernel then stops asking (no GETXATTR of security.capability on every O_TRUNC open). */
static int xattr_enosys;

/* The emulated state: apmask (every adapter but 5, as apvirt's after `-5`) and the mdev's
 * domain. */
static unsigned char apmask[32];
static volatile int assigned_domain = 5;

static int valid(fuse_ino_t ino) { return ino >= N_ROOT && ino < N_COUNT; }

static void fill_stat(fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = nodes[ino].mode;
  st->st_nlink = S_ISDIR(nodes[ino].mode) ? 2 : 1;
  /* sysfs reports 4096 for every attribute, whatever it holds. */
  st->st_size = S_ISDIR(nodes[ino].mode) ? 0 : 4096;
  st->st_blocks = (st->st_size + 511) / 512;
  st->st_blksize = 4096;
  st->st_atime = st->st_mtime = st->st_ctime = boot_time;
}

static void ref_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  count(OP_INIT);
  /* Exactly apvirt's capabilities (FUSESession.initialize): no async read, no splice, no
   * readdirplus, no auto_inval_data, no writeback cache, no posix or flock locks. */
  unsigned want = FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_DONT_MASK;
  conn->want = want & conn->capable;
  if (getenv("SYSFS_REF_DEBUG")) fprintf(stderr, "capable=0x%x want=0x%x\n", conn->capable, conn->want);
  conn->max_write = 128 * 1024;
  conn->max_background = 16;
  conn->congestion_threshold = 12;
  conn->time_gran = 1;
}

static void ref_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  count(OP_LOOKUP);
  for (fuse_ino_t i = N_ROOT + 1; i < N_COUNT; i++) {
    if (nodes[i].parent == parent && strcmp(nodes[i].name, name) == 0) {
      struct fuse_entry_param e;
      memset(&e, 0, sizeof e);
      e.ino = i;
      e.attr_timeout = attr_timeout;
      e.entry_timeout = entry_timeout;
      fill_stat(i, &e.attr);
      fuse_reply_entry(req, &e);
      return;
    }
  }
  /* A failed lookup is not cached (entry timeout 0), as apvirt answers. */
  fuse_reply_err(req, ENOENT);
}

static void ref_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  (void)ino, (void)nlookup;
  count(OP_FORGET);
  fuse_reply_none(req);
}

static void ref_forget_multi(fuse_req_t req, size_t n, struct fuse_forget_data *f) {
  (void)n, (void)f;
  count(OP_BATCH_FORGET);
  fuse_reply_none(req);
}

static void ref_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  count(OP_GETATTR);
  if (!valid(ino)) { fuse_reply_err(req, ENOENT); return; }
  struct stat st;
  fill_stat(ino, &st);
  fuse_reply_attr(req, &st, attr_timeout);
}

static void ref_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                        struct fuse_file_info *fi) {
  (void)attr, (void)to_set, (void)fi;
  count(OP_SETATTR);
  if (!valid(ino)) { fuse_reply_err(req, ENOENT); return; }
  /* sysfs ignores truncation. */
  struct stat st;
  fill_stat(ino, &st);
  fuse_reply_attr(req, &st, attr_timeout);
}

static void ref_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  (void)mask;
  count(OP_ACCESS);
  fuse_reply_err(req, valid(ino) ? 0 : ENOENT);
}

static void ref_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  count(OP_OPEN);
  if (!valid(ino)) { fuse_reply_err(req, ENOENT); return; }
  mode_t m = nodes[ino].mode;
  int acc = fi->flags & O_ACCMODE;
  /* kernfs: no show, no read; no store, no write (whatever the caller's rights). */
  if ((acc != O_WRONLY && !(m & 0444)) || (acc != O_RDONLY && !(m & 0222))) {
    fuse_reply_err(req, EACCES);
    return;
  }
  fi->direct_io = 1;
  fi->keep_cache = 0;
  fuse_reply_open(req, fi);
}

/* The content of a readable attribute, generated at every read at offset 0. */
static size_t show(fuse_ino_t ino, char *buf, size_t cap) {
  if (ino == N_APMASK) {
    size_t n = 0;
    n += snprintf(buf + n, cap - n, "0x");
    for (int i = 0; i < 32; i++) n += snprintf(buf + n, cap - n, "%02x", apmask[i]);
    n += snprintf(buf + n, cap - n, "\n");
    return n;
  }
  if (ino == N_MATRIX) return (size_t)snprintf(buf, cap, "05.%04x\n", assigned_domain);
  return 0;
}

static void ref_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  (void)fi;
  count(OP_READ);
  char buf[4096];
  size_t n = show(ino, buf, sizeof buf);
  if ((size_t)off >= n) { fuse_reply_buf(req, NULL, 0); return; }
  size_t len = n - (size_t)off < size ? n - (size_t)off : size;
  fuse_reply_buf(req, buf + off, len);
}

/* kstrtoul(buf, 0, &v) with sysfs's one trailing newline allowed. */
static int parse_ulong(const char *data, size_t size, unsigned long *out) {
  char buf[64];
  if (size == 0 || size >= sizeof buf) return -EINVAL;
  memcpy(buf, data, size);
  buf[size] = 0;
  if (buf[size - 1] == '\n') buf[size - 1] = 0;
  if (buf[0] == 0 || buf[0] == '-' || buf[0] == '+' || buf[0] == ' ') return -EINVAL;
  char *end;
  errno = 0;
  unsigned long v = strtoul(buf, &end, 0);
  if (errno || *end) return -EINVAL;
  *out = v;
  return 0;
}

static void ref_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
                      struct fuse_file_info *fi) {
  (void)off, (void)fi;
  count(OP_WRITE);
  if (ino == N_ASSIGN_DOMAIN) {
    unsigned long d;
    if (parse_ulong(data, size, &d) || d > 255) { fuse_reply_err(req, EINVAL); return; }
    assigned_domain = (int)d;
    fuse_reply_write(req, size);
    return;
  }
  if (ino == N_APMASK) { fuse_reply_write(req, size); return; }
  fuse_reply_err(req, EACCES);
}

static void ref_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino, (void)fi;
  count(OP_FLUSH);
  /* As apvirt: a store is complete when its WRITE is answered; the kernel stops flushing. */
  fuse_reply_err(req, ENOSYS);
}

static void ref_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino, (void)fi;
  count(OP_RELEASE);
  fuse_reply_err(req, 0);
}

static void ref_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)ino, (void)datasync, (void)fi;
  count(OP_FSYNC);
  fuse_reply_err(req, 0);
}

static void ref_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  count(OP_OPENDIR);
  if (!valid(ino) || !S_ISDIR(nodes[ino].mode)) { fuse_reply_err(req, ENOTDIR); return; }
  fuse_reply_open(req, fi);
}

static void ref_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi) {
  (void)fi;
  count(OP_READDIR);
  char buf[8192];
  if (size > sizeof buf) size = sizeof buf;
  size_t used = 0;
  off_t index = 0;
  struct stat st;
  memset(&st, 0, sizeof st);
  for (fuse_ino_t i = 0; i < N_COUNT + 1; i++) {
    const char *name;
    fuse_ino_t child;
    if (i == 0) { name = "."; child = ino; }
    else if (i == 1) { name = ".."; child = nodes[ino].parent; }
    else if (i < N_COUNT && i > N_ROOT && nodes[i].parent == ino) { name = nodes[i].name; child = i; }
    else continue;
    index++;
    if (index <= off) continue;
    st.st_ino = child;
    st.st_mode = nodes[child].mode;
    size_t n = fuse_add_direntry(req, buf + used, size - used, name, &st, index);
    if (n > size - used) break;
    used += n;
  }
  fuse_reply_buf(req, buf, used);
}

static void ref_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino, (void)fi;
  count(OP_RELEASEDIR);
  fuse_reply_err(req, 0);
}

static void ref_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  count(OP_STATFS);
  struct statvfs s;
  memset(&s, 0, sizeof s);
  s.f_bsize = 4096;
  s.f_namemax = 255;
  fuse_reply_statfs(req, &s);
}

/* sysfs (kernfs): the security and trusted namespaces exist and are empty; no user xattrs. */
static void ref_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  (void)ino, (void)size;
  count(OP_GETXATTR);
  if (xattr_enosys) fuse_reply_err(req, ENOSYS);
  else if (strncmp(name, "security.", 9) == 0 || strncmp(name, "trusted.", 8) == 0)
    fuse_reply_err(req, ENODATA);
  else
    fuse_reply_err(req, EOPNOTSUPP);
}

static void ref_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  (void)ino;
  count(OP_LISTXATTR);
  if (size == 0) fuse_reply_xattr(req, 0);
  else fuse_reply_buf(req, NULL, 0);
}

static void ref_destroy(void *userdata) {
  (void)userdata;
  count(OP_DESTROY);
}

static const struct fuse_lowlevel_ops ops = {
  .init = ref_init,
  .destroy = ref_destroy,
  .lookup = ref_lookup,
  .forget = ref_forget,
  .forget_multi = ref_forget_multi,
  .getattr = ref_getattr,
  .setattr = ref_setattr,
  .access = ref_access,
  .open = ref_open,
  .read = ref_read,
  .write = ref_write,
  .flush = ref_flush,
  .release = ref_release,
  .fsync = ref_fsync,
  .opendir = ref_opendir,
  .readdir = ref_readdir,
  .releasedir = ref_releasedir,
  .statfs = ref_statfs,
  .getxattr = ref_getxattr,
  .listxattr = ref_listxattr,
};

static void usage(void) {
  fprintf(stderr,
          "usage: sysfs-ref MOUNTPOINT [--threads N] [--counts FILE] [--uuid UUID] [--xattr enosys]"
          " [-o OPTS]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *mountpoint = NULL, *counts_path = NULL;
  /* apvirt's mount options (FUSEMount.defaultOptions as root); libfuse adds nosuid,nodev as
   * apvirt does (MS_NOSUID | MS_NODEV). */
  char opts[512] = "default_permissions,allow_other,fsname=sysfsref,subtype=sysfsref";
  unsigned threads = 4;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = (unsigned)atoi(argv[++i]);
    else if (strcmp(argv[i], "--counts") == 0 && i + 1 < argc) counts_path = argv[++i];
    else if (strcmp(argv[i], "--uuid") == 0 && i + 1 < argc)
      snprintf(mdev_uuid, sizeof mdev_uuid, "%s", argv[++i]);
    else if (strcmp(argv[i], "--xattr") == 0 && i + 1 < argc)
      xattr_enosys = strcmp(argv[++i], "enosys") == 0;
    else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      size_t n = strlen(opts);
      snprintf(opts + n, sizeof opts - n, ",%s", argv[++i]);
    } else if (argv[i][0] != '-' && !mountpoint) mountpoint = argv[i];
    else usage();
  }
  if (!mountpoint || threads < 1) usage();

  if (counts_path) {
    int fd = open(counts_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ftruncate(fd, sizeof local_counts) != 0) { perror(counts_path); return 1; }
    void *p = mmap(NULL, sizeof local_counts, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    counts = p;
    close(fd);
  }
  boot_time = time(NULL);
  memset(apmask, 0xff, sizeof apmask);
  apmask[0] = 0xfb; /* adapter 5 freed: bit 5 from the left */

  char *fargv[] = {argv[0], "-o", opts, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  if (!se) return 1;
  int rc = 1;
  if (fuse_set_signal_handlers(se) != 0) goto out;
  if (fuse_session_mount(se, mountpoint) != 0) goto out_signals;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_max_threads(cfg, threads);
  fuse_loop_cfg_set_idle_threads(cfg, threads);
  rc = fuse_session_loop_mt(se, cfg) ? 1 : 0;
  fuse_loop_cfg_destroy(cfg);
  fuse_session_unmount(se);
out_signals:
  fuse_remove_signal_handlers(se);
out:
  fuse_session_destroy(se);
  fprintf(stderr, "sysfs-ref requests:");
  for (int op = 0; op < OP_MAX; op++)
    if (counts[op]) fprintf(stderr, " %s=%llu", op_names[op] ? op_names[op] : "?",
                            (unsigned long long)counts[op]);
  fprintf(stderr, "\n");
  return rc;
}
