#include "otlp.h"

#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#ifndef WARREN_VERSION
#define WARREN_VERSION "0.0.0" /* CMake defines it from PROJECT_VERSION */
#endif

typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;
typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Trace__V1__Span__Event pb_event;
typedef Opentelemetry__Proto__Trace__V1__Span__Link pb_link;
typedef Opentelemetry__Proto__Trace__V1__Status pb_status;

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

/* The request's structs live in chunks freed together once it is packed:
 * thousands of small mallocs less per batch. */
typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  max_align_t data[];
} chunk;

typedef struct arena {
  chunk *head;
  int failed;
} arena;

#define CHUNK_MIN (64 * 1024)

static void *alloc(arena *a, size_t n) {
  n = align(n);
  chunk *c = a->head;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > CHUNK_MIN ? n : CHUNK_MIN;
    c = malloc(sizeof *c + cap);
    if (!c) {
      a->failed = 1;
      return NULL;
    }
    c->cap = cap;
    c->used = 0;
    c->next = a->head;
    a->head = c;
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  memset(p, 0, n);
  return p;
}

static void arena_free(arena *a) {
  while (a->head) {
    chunk *n = a->head->next;
    free(a->head);
    a->head = n;
  }
}

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

/* A NUL-terminated copy with invalid UTF-8 bytes as '?' (a NUL inside
 * ends the string: protobuf-c strings are C strings). */
static char *str(arena *a, const char *s, size_t len) {
  if (!s) return (char *)protobuf_c_empty_string;
  char *d = alloc(a, len + 1);
  if (!d) return (char *)protobuf_c_empty_string;
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    size_t k = utf8_seq(u + i, len - i);
    if (k == 0) {
      d[i++] = '?';
    } else {
      memcpy(d + i, u + i, k);
      i += k;
    }
  }
  d[len] = '\0';
  return d;
}

static char *cstr(arena *a, const char *s) {
  return s ? str(a, s, strlen(s)) : (char *)protobuf_c_empty_string;
}

static pb_kv *kv(arena *a, const char *key, pb_any **val) {
  pb_kv *k = alloc(a, sizeof *k);
  pb_any *v = alloc(a, sizeof *v);
  if (!k || !v) return NULL;
  opentelemetry__proto__common__v1__key_value__init(k);
  opentelemetry__proto__common__v1__any_value__init(v);
  k->key = cstr(a, key);
  k->value = v;
  *val = v;
  return k;
}

static pb_kv *kv_str(arena *a, const char *key, const char *s, size_t len) {
  pb_any *v;
  pb_kv *k = kv(a, key, &v);
  if (!k) return NULL;
  v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
  v->string_value = str(a, s, len);
  return k;
}

static pb_kv **attrs(arena *a, const wr_attr *in, size_t n) {
  if (!n) return NULL;
  pb_kv **out = alloc(a, n * sizeof *out);
  if (!out) return NULL;
  for (size_t i = 0; i < n; i++) {
    pb_any *v;
    const wr_attr *at = &in[i];
    if (at->type == WR_ATTR_STRING) {
      out[i] = kv_str(a, at->key, at->str, at->len);
      continue;
    }
    out[i] = kv(a, at->key, &v);
    if (!out[i]) return NULL;
    switch (at->type) {
      case WR_ATTR_INT:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        v->int_value = at->i;
        break;
      case WR_ATTR_DOUBLE:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
        v->double_value = at->d;
        break;
      case WR_ATTR_BOOL:
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
        v->bool_value = at->i != 0;
        break;
      default:
        /* An unknown type is sent as an empty value, not as garbage. */
        break;
    }
  }
  return out;
}

static ProtobufCBinaryData bytes(const uint8_t *p, size_t n) {
  return (ProtobufCBinaryData){n, (uint8_t *)p};
}

static pb_span *span(arena *a, const wr_span *s) {
  pb_span *p = alloc(a, sizeof *p);
  pb_status *st = alloc(a, sizeof *st);
  if (!p || !st) return NULL;
  opentelemetry__proto__trace__v1__span__init(p);
  opentelemetry__proto__trace__v1__status__init(st);
  p->trace_id = bytes(s->trace_id, sizeof s->trace_id);
  p->span_id = bytes(s->span_id, sizeof s->span_id);
  if (s->has_parent)
    p->parent_span_id = bytes(s->parent_span_id, sizeof s->parent_span_id);
  p->trace_state = cstr(a, s->tracestate);
  /* The W3C flags only: whether the parent is remote (bits 8 and 9 of
   * trace.proto's SpanFlags) is not known here, and unset means that. */
  p->flags = s->flags;
  p->name = cstr(a, s->name);
  p->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)s->kind;
  p->start_time_unix_nano = s->start_ns;
  p->end_time_unix_nano = s->end_ns;
  p->n_attributes = s->nattrs;
  p->attributes = attrs(a, s->attrs, s->nattrs);
  if (s->nevents) {
    p->events = alloc(a, s->nevents * sizeof *p->events);
    if (!p->events) return NULL;
    p->n_events = s->nevents;
    for (size_t i = 0; i < s->nevents; i++) {
      pb_event *e = alloc(a, sizeof *e);
      if (!e) return NULL;
      opentelemetry__proto__trace__v1__span__event__init(e);
      e->time_unix_nano = s->events[i].time_ns;
      e->name = cstr(a, s->events[i].name);
      e->n_attributes = s->events[i].nattrs;
      e->attributes = attrs(a, s->events[i].attrs, s->events[i].nattrs);
      p->events[i] = e;
    }
  }
  if (s->nlinks) {
    p->links = alloc(a, s->nlinks * sizeof *p->links);
    if (!p->links) return NULL;
    p->n_links = s->nlinks;
    for (size_t i = 0; i < s->nlinks; i++) {
      const wr_span_link *in = &s->links[i];
      pb_link *l = alloc(a, sizeof *l);
      if (!l) return NULL;
      opentelemetry__proto__trace__v1__span__link__init(l);
      l->trace_id = bytes(in->trace_id, sizeof in->trace_id);
      l->span_id = bytes(in->span_id, sizeof in->span_id);
      l->trace_state = cstr(a, in->tracestate);
      l->flags = in->flags;
      p->links[i] = l;
    }
  }
  st->code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)s->status;
  st->message = cstr(a, s->status_msg);
  p->status = st;
  return p;
}

uint8_t *wr_otlp_encode(const wr_otlp_resource *res,
                        const wr_span *const *spans, size_t n, size_t *len) {
  arena a = {0};
  Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req;
  Opentelemetry__Proto__Trace__V1__ResourceSpans rs;
  Opentelemetry__Proto__Resource__V1__Resource r;
  Opentelemetry__Proto__Trace__V1__ScopeSpans ss;
  Opentelemetry__Proto__Common__V1__InstrumentationScope scope;
  opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(
      &req);
  opentelemetry__proto__trace__v1__resource_spans__init(&rs);
  opentelemetry__proto__resource__v1__resource__init(&r);
  opentelemetry__proto__trace__v1__scope_spans__init(&ss);
  opentelemetry__proto__common__v1__instrumentation_scope__init(&scope);
  Opentelemetry__Proto__Trace__V1__ResourceSpans *rsp = &rs;
  Opentelemetry__Proto__Trace__V1__ScopeSpans *ssp = &ss;
  req.n_resource_spans = 1;
  req.resource_spans = &rsp;
  rs.resource = &r;
  rs.n_scope_spans = 1;
  rs.scope_spans = &ssp;
  scope.name = "warren";
  scope.version = WARREN_VERSION;
  ss.scope = &scope;

  size_t nr = res->nattrs + 1 + (res->pid > 0);
  r.attributes = alloc(&a, nr * sizeof *r.attributes);
  if (r.attributes) {
    r.attributes[r.n_attributes++] =
        kv_str(&a, "service.name", res->service_name,
               res->service_name ? strlen(res->service_name) : 0);
    for (size_t i = 0; i < res->nattrs; i++)
      r.attributes[r.n_attributes++] =
          kv_str(&a, res->attrs[i].key, res->attrs[i].value,
                 strlen(res->attrs[i].value));
    if (res->pid > 0) {
      pb_any *v;
      pb_kv *k = kv(&a, "process.pid", &v);
      if (k) {
        v->value_case =
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
        v->int_value = res->pid;
      }
      r.attributes[r.n_attributes++] = k;
    }
  }
  ss.spans = n ? alloc(&a, n * sizeof *ss.spans) : NULL;
  ss.n_spans = ss.spans ? n : 0;
  for (size_t i = 0; i < ss.n_spans; i++) ss.spans[i] = span(&a, spans[i]);

  uint8_t *out = NULL;
  /* Any allocation that failed left a NULL the packer would follow. */
  if (!a.failed) {
    size_t sz =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            &req);
    out = malloc(sz ? sz : 1);
    if (out) {
      *len =
          opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(
              &req, out);
    }
  }
  arena_free(&a);
  return out;
}
