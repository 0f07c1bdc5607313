#include "otlp.h"

#include <stdlib.h>
#include <string.h>

#ifndef WARREN_VERSION
#define WARREN_VERSION "0.0.0" /* CMake defines it from PROJECT_VERSION */
#endif

static size_t align(size_t n) {
  return (n + WR_OTLP_FLAT_ALIGN - 1) & ~(size_t)(WR_OTLP_FLAT_ALIGN - 1);
}

static size_t zlen(const char *s) {
  return s ? strlen(s) + 1 : 0;
}

static size_t attrs_size(const wr_attr *a, size_t n) {
  size_t b = n * sizeof *a;
  for (size_t i = 0; i < n; i++) {
    b += zlen(a[i].key);
    if (a[i].type == WR_ATTR_STRING) b += a[i].len + 1;
  }
  return b;
}

/* The structs come first (all multiples of 8 bytes: they hold pointers
 * and 64-bit numbers), then the strings. */
size_t wr_otlp_flat_size(const wr_span *sp) {
  size_t b = sizeof *sp + zlen(sp->name) + zlen(sp->tracestate) +
             zlen(sp->status_msg) + attrs_size(sp->attrs, sp->nattrs);
  b += sp->nevents * sizeof *sp->events + sp->nlinks * sizeof *sp->links;
  for (size_t i = 0; i < sp->nevents; i++)
    b += zlen(sp->events[i].name) +
         attrs_size(sp->events[i].attrs, sp->events[i].nattrs);
  for (size_t i = 0; i < sp->nlinks; i++) b += zlen(sp->links[i].tracestate);
  return align(b);
}

typedef struct writer {
  char *base;
  size_t structs; /* next struct offset */
  size_t strings; /* next string offset */
} writer;

/* Offsets stand in for pointers; 0 (the span itself) means NULL. */
#define OFF(T, o) ((T)(uintptr_t)(o))

static size_t put_bytes(writer *w, const char *s, size_t len) {
  size_t o = w->strings;
  memcpy(w->base + o, s, len);
  w->base[o + len] = '\0';
  w->strings += len + 1;
  return o;
}

static const char *put_str(writer *w, const char *s) {
  return s ? OFF(const char *, put_bytes(w, s, strlen(s))) : NULL;
}

static void *take(writer *w, size_t bytes, size_t *off) {
  *off = w->structs;
  w->structs += bytes;
  return w->base + *off;
}

static const wr_attr *put_attrs(writer *w, const wr_attr *a, size_t n) {
  if (!n) return NULL;
  size_t off;
  wr_attr *d = take(w, n * sizeof *d, &off);
  for (size_t i = 0; i < n; i++) {
    d[i] = a[i];
    d[i].key = put_str(w, a[i].key);
    d[i].str = a[i].type == WR_ATTR_STRING
                   ? OFF(const char *, put_bytes(w, a[i].str, a[i].len))
                   : NULL;
    if (a[i].type != WR_ATTR_STRING) d[i].len = 0;
  }
  return OFF(const wr_attr *, off);
}

void wr_otlp_flatten(void *dst, const wr_span *sp) {
  writer w = {dst, sizeof *sp, 0};
  /* Strings follow every struct: count the structs first. */
  size_t structs = sizeof *sp + sp->nattrs * sizeof(wr_attr) +
                   sp->nevents * sizeof(wr_span_event) +
                   sp->nlinks * sizeof(wr_span_link);
  for (size_t i = 0; i < sp->nevents; i++)
    structs += sp->events[i].nattrs * sizeof(wr_attr);
  w.strings = structs;
  wr_span *d = dst;
  *d = *sp;
  d->name = put_str(&w, sp->name);
  d->tracestate = put_str(&w, sp->tracestate);
  d->status_msg = put_str(&w, sp->status_msg);
  d->attrs = put_attrs(&w, sp->attrs, sp->nattrs);
  size_t eo = 0, lo = 0;
  wr_span_event *ev =
      sp->nevents ? take(&w, sp->nevents * sizeof *ev, &eo) : NULL;
  wr_span_link *lk = sp->nlinks ? take(&w, sp->nlinks * sizeof *lk, &lo) : NULL;
  for (size_t i = 0; i < sp->nevents; i++) {
    ev[i] = sp->events[i];
    ev[i].name = put_str(&w, sp->events[i].name);
    ev[i].attrs = put_attrs(&w, sp->events[i].attrs, sp->events[i].nattrs);
  }
  for (size_t i = 0; i < sp->nlinks; i++) {
    lk[i] = sp->links[i];
    lk[i].tracestate = put_str(&w, sp->links[i].tracestate);
  }
  d->events = OFF(const wr_span_event *, eo);
  d->links = OFF(const wr_span_link *, lo);
  /* The padding is written too: the copy is moved as bytes. */
  size_t end = align(w.strings);
  memset(w.base + w.strings, 0, end - w.strings);
}

#define FIX(base, p) \
  ((p) ? (__typeof__(p))((char *)(base) + (uintptr_t)(p)) : NULL)

static void fix_attrs(char *base, wr_attr *a, size_t n) {
  for (size_t i = 0; i < n; i++) {
    a[i].key = FIX(base, a[i].key);
    a[i].str = FIX(base, a[i].str);
  }
}

wr_span *wr_otlp_unflatten(void *p) {
  char *base = p;
  wr_span *sp = p;
  sp->name = FIX(base, sp->name);
  sp->tracestate = FIX(base, sp->tracestate);
  sp->status_msg = FIX(base, sp->status_msg);
  sp->attrs = FIX(base, sp->attrs);
  sp->events = FIX(base, sp->events);
  sp->links = FIX(base, sp->links);
  fix_attrs(base, (wr_attr *)sp->attrs, sp->nattrs);
  for (size_t i = 0; i < sp->nevents; i++) {
    wr_span_event *ev = (wr_span_event *)&sp->events[i];
    ev->name = FIX(base, ev->name);
    ev->attrs = FIX(base, ev->attrs);
    fix_attrs(base, (wr_attr *)ev->attrs, ev->nattrs);
  }
  for (size_t i = 0; i < sp->nlinks; i++) {
    wr_span_link *lk = (wr_span_link *)&sp->links[i];
    lk->tracestate = FIX(base, lk->tracestate);
  }
  return sp;
}

/* ---- encoding ---- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if none. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned min;
  unsigned cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2, min = 0x80, cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3, min = 0x800, cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4, min = 0x10000, cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

/*
 * The protobuf wire format of trace.proto, common.proto, resource.proto
 * and trace_service.proto, written directly. protobuf-c's packer walks
 * its descriptors and sizes every nested message again at each level of
 * nesting: 17,000 instructions a span here (bench/run callgrind), on the
 * exporter's thread, which shares the machine's cores with the consume
 * loop. This writes the same bytes, sized once, in a tenth of that. The
 * generated protobuf-c code stays the reference: the unit tests decode
 * what this writes with it, and the integration tests with protobufjs.
 * Zero values are left out, as proto3 encoders do.
 */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static size_t vsize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, n++;
  return n;
}

static size_t tsize(unsigned field) {
  return vsize((uint64_t)field << 3);
}

/* A length-delimited field of n bytes, tag included. */
static size_t lsize(unsigned field, size_t n) {
  return tsize(field) + vsize(n) + n;
}

typedef struct out {
  uint8_t *p;
} out;

static void put_varint(out *o, uint64_t v) {
  while (v >= 0x80) {
    *o->p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *o->p++ = (uint8_t)v;
}

static void put_tag(out *o, unsigned field, unsigned wt) {
  put_varint(o, (uint64_t)field << 3 | wt);
}

static void put_len(out *o, unsigned field, size_t n) {
  put_tag(o, field, WT_LEN);
  put_varint(o, n);
}

static void put_fixed(out *o, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) *o->p++ = (uint8_t)(v >> (8 * i));
}

static void put_raw(out *o, unsigned field, const void *b, size_t n) {
  put_len(o, field, n);
  memcpy(o->p, b, n);
  o->p += n;
}

/* A string as valid UTF-8: each byte of an invalid sequence becomes '?',
 * so the length does not change. Most strings are ASCII: copied at once,
 * checked from the first byte that is not. */
static void put_string(out *o, unsigned field, const char *s, size_t n) {
  put_len(o, field, n);
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n && u[i] < 0x80) i++;
  memcpy(o->p, u, i);
  while (i < n) {
    size_t k = utf8_seq(u + i, n - i);
    if (k == 0) {
      o->p[i++] = '?';
    } else {
      memcpy(o->p + i, u + i, k);
      i += k;
    }
  }
  o->p += n;
}

static size_t slen(const char *s) {
  return s ? strlen(s) : 0;
}

/* AnyValue of a; 0 bytes for an unknown type (an empty value). */
static size_t any_size(const wr_attr *a) {
  switch (a->type) {
    case WR_ATTR_STRING:
      return lsize(1, a->len);
    case WR_ATTR_BOOL:
      return tsize(2) + 1;
    case WR_ATTR_INT:
      return tsize(3) + vsize((uint64_t)a->i);
    case WR_ATTR_DOUBLE:
      return tsize(4) + 8;
    default:
      return 0;
  }
}

static size_t kv_size(const wr_attr *a) {
  return lsize(1, slen(a->key)) + lsize(2, any_size(a));
}

static void put_kv(out *o, unsigned field, const wr_attr *a) {
  size_t any = any_size(a);
  put_len(o, field, lsize(1, slen(a->key)) + lsize(2, any));
  put_string(o, 1, a->key ? a->key : "", slen(a->key));
  put_len(o, 2, any);
  switch (a->type) {
    case WR_ATTR_STRING:
      put_string(o, 1, a->str ? a->str : "", a->len);
      break;
    case WR_ATTR_BOOL:
      put_tag(o, 2, WT_VARINT);
      put_varint(o, a->i != 0);
      break;
    case WR_ATTR_INT:
      put_tag(o, 3, WT_VARINT);
      put_varint(o, (uint64_t)a->i);
      break;
    case WR_ATTR_DOUBLE: {
      uint64_t b;
      memcpy(&b, &a->d, 8);
      put_tag(o, 4, WT_I64);
      put_fixed(o, b, 8);
      break;
    }
    default:
      break;
  }
}

static size_t kvs_size(unsigned field, const wr_attr *a, size_t n) {
  size_t t = 0;
  for (size_t i = 0; i < n; i++) t += lsize(field, kv_size(&a[i]));
  return t;
}

static size_t event_size(const wr_span_event *e) {
  return tsize(1) + 8 + (slen(e->name) ? lsize(2, slen(e->name)) : 0) +
         kvs_size(3, e->attrs, e->nattrs);
}

static size_t link_size(const wr_span_link *l) {
  return lsize(1, 16) + lsize(2, 8) +
         (slen(l->tracestate) ? lsize(3, slen(l->tracestate)) : 0) +
         (l->flags ? tsize(6) + 4 : 0);
}

static size_t status_size(const wr_span *s) {
  return (slen(s->status_msg) ? lsize(2, slen(s->status_msg)) : 0) +
         (s->status ? tsize(3) + vsize((uint64_t)s->status) : 0);
}

static size_t span_size(const wr_span *s) {
  size_t n = lsize(1, 16) + lsize(2, 8);
  if (slen(s->tracestate)) n += lsize(3, slen(s->tracestate));
  if (s->has_parent) n += lsize(4, 8);
  if (slen(s->name)) n += lsize(5, slen(s->name));
  if (s->kind) n += tsize(6) + vsize((uint64_t)s->kind);
  n += 2 * (tsize(7) + 8);
  n += kvs_size(9, s->attrs, s->nattrs);
  for (size_t i = 0; i < s->nevents; i++)
    n += lsize(11, event_size(&s->events[i]));
  for (size_t i = 0; i < s->nlinks; i++)
    n += lsize(13, link_size(&s->links[i]));
  n += lsize(15, status_size(s)); /* always, as protobuf-c wrote it */
  /* The W3C flags only: whether the parent is remote (bits 8 and 9 of
   * SpanFlags) is not known here, and unset means that. */
  if (s->flags) n += tsize(16) + 4;
  return n;
}

static void put_span(out *o, const wr_span *s, size_t size) {
  put_len(o, 2, size); /* ScopeSpans.spans */
  put_raw(o, 1, s->trace_id, 16);
  put_raw(o, 2, s->span_id, 8);
  if (slen(s->tracestate)) put_string(o, 3, s->tracestate, slen(s->tracestate));
  if (s->has_parent) put_raw(o, 4, s->parent_span_id, 8);
  if (slen(s->name)) put_string(o, 5, s->name, slen(s->name));
  if (s->kind) {
    put_tag(o, 6, WT_VARINT);
    put_varint(o, (uint64_t)s->kind);
  }
  put_tag(o, 7, WT_I64);
  put_fixed(o, s->start_ns, 8);
  put_tag(o, 8, WT_I64);
  put_fixed(o, s->end_ns, 8);
  for (size_t i = 0; i < s->nattrs; i++) put_kv(o, 9, &s->attrs[i]);
  for (size_t i = 0; i < s->nevents; i++) {
    const wr_span_event *e = &s->events[i];
    put_len(o, 11, event_size(e));
    put_tag(o, 1, WT_I64);
    put_fixed(o, e->time_ns, 8);
    if (slen(e->name)) put_string(o, 2, e->name, slen(e->name));
    for (size_t k = 0; k < e->nattrs; k++) put_kv(o, 3, &e->attrs[k]);
  }
  for (size_t i = 0; i < s->nlinks; i++) {
    const wr_span_link *l = &s->links[i];
    put_len(o, 13, link_size(l));
    put_raw(o, 1, l->trace_id, 16);
    put_raw(o, 2, l->span_id, 8);
    if (slen(l->tracestate))
      put_string(o, 3, l->tracestate, slen(l->tracestate));
    if (l->flags) {
      put_tag(o, 6, WT_I32);
      put_fixed(o, l->flags, 4);
    }
  }
  {
    put_len(o, 15, status_size(s));
    if (slen(s->status_msg))
      put_string(o, 2, s->status_msg, slen(s->status_msg));
    if (s->status) {
      put_tag(o, 3, WT_VARINT);
      put_varint(o, (uint64_t)s->status);
    }
  }
  if (s->flags) {
    put_tag(o, 16, WT_I32);
    put_fixed(o, s->flags, 4);
  }
}

uint8_t *wr_otlp_encode(const wr_otlp_resource *res,
                        const wr_span *const *spans, size_t n, size_t *len) {
  /* The resource's attributes: service.name, the user's, process.pid. */
  size_t nr = res->nattrs + 1 + (res->pid > 0);
  wr_attr *ra = malloc(nr * sizeof *ra);
  size_t *ssz = malloc((n ? n : 1) * sizeof *ssz);
  if (!ra || !ssz) {
    free(ra);
    free(ssz);
    return NULL;
  }
  size_t k = 0;
  ra[k++] = (wr_attr){.key = "service.name",
                      .type = WR_ATTR_STRING,
                      .str = res->service_name ? res->service_name : "",
                      .len = slen(res->service_name)};
  for (size_t i = 0; i < res->nattrs; i++)
    ra[k++] = (wr_attr){.key = res->attrs[i].key,
                        .type = WR_ATTR_STRING,
                        .str = res->attrs[i].value,
                        .len = strlen(res->attrs[i].value)};
  if (res->pid > 0)
    ra[k++] =
        (wr_attr){.key = "process.pid", .type = WR_ATTR_INT, .i = res->pid};
  size_t resource = kvs_size(1, ra, k);
  size_t scope = lsize(1, strlen("warren")) + lsize(2, strlen(WARREN_VERSION));
  size_t scope_spans = lsize(1, scope);
  for (size_t i = 0; i < n; i++) {
    ssz[i] = span_size(spans[i]);
    scope_spans += lsize(2, ssz[i]);
  }
  size_t rs = lsize(1, resource) + lsize(2, scope_spans);
  size_t total = lsize(1, rs);
  uint8_t *buf = malloc(total);
  if (buf) {
    out o = {buf};
    put_len(&o, 1, rs);       /* ExportTraceServiceRequest.resource_spans */
    put_len(&o, 1, resource); /* ResourceSpans.resource */
    for (size_t i = 0; i < k; i++) put_kv(&o, 1, &ra[i]);
    put_len(&o, 2, scope_spans); /* ResourceSpans.scope_spans */
    put_len(&o, 1, scope);       /* ScopeSpans.scope */
    put_string(&o, 1, "warren", strlen("warren"));
    put_string(&o, 2, WARREN_VERSION, strlen(WARREN_VERSION));
    for (size_t i = 0; i < n; i++) put_span(&o, spans[i], ssz[i]);
    *len = (size_t)(o.p - buf);
  }
  free(ra);
  free(ssz);
  return buf;
}
