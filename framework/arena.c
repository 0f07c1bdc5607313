#include "arena.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096u
#define GROW_MIN ((size_t)1 << 20)
#define ARENA_IDLE_S 5.0
/* Classes: one page, then four per power of two up to the reservation. */
#define NCLASS (1 + 4 * 32)

struct wr_arena {
  int fd;
  unsigned char *base; /* WR_ARENA_RESERVE bytes of address space */
  size_t mapped;       /* file size, all of it mapped from base */
  size_t top;          /* blocks are carved below this */
  size_t live;         /* bytes of blocks handed out */
  double empty_since;  /* when live last became 0 (0: not empty) */
  uint64_t free_head[NCLASS];
  struct wr_arena *next; /* every region of this process (adopt) */
};

static wr_arena *g_all;

/* The size a request of len gets, and its class. */
static size_t class_of(size_t len, unsigned *cls) {
  if (len <= PAGE) {
    *cls = 0;
    return PAGE;
  }
  unsigned lg = 63u - (unsigned)__builtin_clzll((unsigned long long)len - 1);
  size_t step = ((size_t)1 << lg) / 4; /* 2^lg < len <= 2^(lg+1) */
  size_t q = (len + step - 1) / step;  /* 5..8 quarters */
  *cls = 1 + (lg - 12) * 4 + (unsigned)(q - 5);
  return q * step;
}

static void forget_blocks(wr_arena *a) {
  a->top = a->live = 0;
  for (int i = 0; i < NCLASS; i++) a->free_head[i] = WR_ARENA_NONE;
}

wr_arena *wr_arena_open(const char *name) {
  wr_arena *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  char label[64];
  snprintf(label, sizeof label, "warren-%s", name);
  a->fd = memfd_create(label, MFD_CLOEXEC);
  /* Reserved, not committed: the file is mapped into it as it grows, so
   * a block's address never changes. */
  a->base = mmap(NULL, WR_ARENA_RESERVE, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (a->fd < 0 || a->base == MAP_FAILED) {
    if (a->fd >= 0) close(a->fd);
    if (a->base != MAP_FAILED) munmap(a->base, WR_ARENA_RESERVE);
    free(a);
    return NULL;
  }
  forget_blocks(a);
  a->next = g_all;
  g_all = a;
  return a;
}

void wr_arena_close(wr_arena *a) {
  if (!a) return;
  for (wr_arena **p = &g_all; *p; p = &(*p)->next)
    if (*p == a) {
      *p = a->next;
      break;
    }
  munmap(a->base, WR_ARENA_RESERVE);
  close(a->fd);
  free(a);
}

static int grow(wr_arena *a, size_t need) {
  size_t size = a->mapped * 2;
  if (size < GROW_MIN) size = GROW_MIN;
  if (size < need) size = (need + PAGE - 1) / PAGE * PAGE;
  if (size > WR_ARENA_RESERVE) size = WR_ARENA_RESERVE;
  if (ftruncate(a->fd, (off_t)size) != 0) return -1;
  /* Untouched pages of the file cost nothing: the size is address space. */
  if (mmap(a->base + a->mapped, size - a->mapped, PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_FIXED, a->fd, (off_t)a->mapped) == MAP_FAILED) {
    int rc = ftruncate(a->fd, (off_t)a->mapped); /* back to what is mapped */
    (void)rc;
    return -1;
  }
  a->mapped = size;
  return 0;
}

void *wr_arena_alloc(wr_arena *a, size_t len, uint64_t *off) {
  unsigned cls;
  size_t size = class_of(len, &cls);
  if (size > WR_ARENA_RESERVE || cls >= NCLASS) return NULL;
  uint64_t o = a->free_head[cls];
  if (o != WR_ARENA_NONE) {
    memcpy(&a->free_head[cls], a->base + o, sizeof o);
  } else {
    if (size > WR_ARENA_RESERVE - a->top) return NULL;
    if (a->top + size > a->mapped && grow(a, a->top + size) != 0) return NULL;
    o = a->top;
    a->top += size;
  }
  a->live += size;
  a->empty_since = 0;
  *off = o;
  return a->base + o;
}

void wr_arena_free(wr_arena *a, uint64_t off, size_t len) {
  unsigned cls;
  size_t size = class_of(len, &cls);
  /* The link lives in the freed block itself. */
  memcpy(a->base + off, &a->free_head[cls], sizeof off);
  a->free_head[cls] = off;
  a->live -= size;
}

void wr_arena_tick(wr_arena *a, double now) {
  if (!a || a->live || a->mapped <= WR_ARENA_KEEP) return;
  if (a->empty_since == 0) {
    a->empty_since = now;
    return;
  }
  if (now - a->empty_since < ARENA_IDLE_S) return;
  /* Truncating frees the pages in every process that maps them; the
   * reservation is put back in front of the unmapped range. */
  mmap(a->base, a->mapped, PROT_NONE,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  int rc = ftruncate(a->fd, 0); /* on failure the pages stay; harmless */
  (void)rc;
  a->mapped = 0;
  a->empty_since = 0;
  forget_blocks(a);
}

size_t wr_arena_live(const wr_arena *a) {
  return a ? a->live : 0;
}

size_t wr_arena_mapped(const wr_arena *a) {
  return a ? a->mapped : 0;
}

void wr_arena_adopt(wr_arena *a, int fd) {
  for (wr_arena *r = g_all; r; r = r->next) {
    if (r == a) continue;
    munmap(r->base, WR_ARENA_RESERVE);
    close(r->fd);
  }
  if (!a) return;
  /* Read-only here: a handler writing to its body (the ABI forbids it)
   * crashes its worker instead of changing what a retry republishes. */
  if (a->mapped) mprotect(a->base, a->mapped, PROT_READ);
  if (a->fd != fd) {
    dup2(a->fd, fd);
    close(a->fd);
    a->fd = fd;
  }
  /* A program the handler runs does not inherit the region. */
  fcntl(fd, F_SETFD, FD_CLOEXEC);
}

const void *wr_arena_view(wr_arena *a, uint64_t off, size_t len) {
  if (!a || off > WR_ARENA_RESERVE || len > WR_ARENA_RESERVE - off) return NULL;
  size_t end = (size_t)off + len;
  if (end > a->mapped) {
    struct stat st;
    if (fstat(a->fd, &st) != 0 || (size_t)st.st_size < end ||
        (size_t)st.st_size > WR_ARENA_RESERVE)
      return NULL;
    size_t size = (size_t)st.st_size;
    if (mmap(a->base + a->mapped, size - a->mapped, PROT_READ,
             MAP_SHARED | MAP_FIXED, a->fd, (off_t)a->mapped) == MAP_FAILED)
      return NULL;
    a->mapped = size;
  }
  return a->base + off;
}
