#include "extras.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <warren/status.h>

enum { REC_ATTR = 1, REC_EVENT = 2, REC_FOLLOWUP = 3, REC_RESULT = 4 };

#define KEEP_CAP ((size_t)1 << 20)

/* ---- recording ----------------------------------------------------------- */

static int reserve(wr_extras_buf *b, size_t more) {
  if (more > WR_EXTRAS_MAX_BYTES - b->len) return WARREN_TOO_LARGE;
  if (b->len + more <= b->cap) return WARREN_OK;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more) cap *= 2;
  if (cap > WR_EXTRAS_MAX_BYTES) cap = WR_EXTRAS_MAX_BYTES;
  unsigned char *p = realloc(b->p, cap);
  if (!p) return WARREN_NOMEM;
  b->p = p;
  b->cap = cap;
  return WARREN_OK;
}

/* Appends go to b->len; the caller commits or rolls back. */
static void put(wr_extras_buf *b, const void *v, size_t n) {
  if (n) memcpy(b->p + b->len, v, n);
  b->len += n;
}

static int put_str(wr_extras_buf *b, const char *s, size_t n) {
  if (n > UINT32_MAX) return WARREN_TOO_LARGE;
  int rc = reserve(b, 4 + n + 1);
  if (rc != WARREN_OK) return rc;
  uint32_t l = (uint32_t)n;
  put(b, &l, 4);
  put(b, s, n);
  put(b, "", 1);
  return WARREN_OK;
}

static int put_u8(wr_extras_buf *b, uint8_t v) {
  int rc = reserve(b, 1);
  if (rc == WARREN_OK) put(b, &v, 1);
  return rc;
}

static int put_u32(wr_extras_buf *b, uint32_t v) {
  int rc = reserve(b, 4);
  if (rc == WARREN_OK) put(b, &v, 4);
  return rc;
}

static int put_u64(wr_extras_buf *b, uint64_t v) {
  int rc = reserve(b, 8);
  if (rc == WARREN_OK) put(b, &v, 8);
  return rc;
}

static int short_enough(const char *s, size_t max) {
  return !s || strnlen(s, max + 1) <= max;
}

static int put_value(wr_extras_buf *b, const char *key, const warren_value *v) {
  if (!key || !*key || !v || !short_enough(key, WR_EXTRAS_MAX_VALUE))
    return WARREN_INVALID;
  int rc = put_str(b, key, strlen(key));
  if (rc == WARREN_OK) rc = put_u8(b, (uint8_t)v->type);
  if (rc != WARREN_OK) return rc;
  switch (v->type) {
    case WARREN_VALUE_STRING:
      if (!v->str && v->len) return WARREN_INVALID;
      if (v->len > WR_EXTRAS_MAX_VALUE) return WARREN_TOO_LARGE;
      return put_str(b, v->str ? v->str : "", v->len);
    case WARREN_VALUE_INT:
    case WARREN_VALUE_BOOL:
      return put_u64(
          b, (uint64_t)(v->type == WARREN_VALUE_BOOL ? v->i != 0 : v->i));
    case WARREN_VALUE_DOUBLE: {
      uint64_t d;
      memcpy(&d, &v->d, 8);
      return put_u64(b, d);
    }
    default:
      return WARREN_INVALID;
  }
}

int wr_extras_attr(wr_extras_buf *b, const char *key, const warren_value *v) {
  if (b->nattrs >= WR_EXTRAS_MAX_ATTRS) return WARREN_TOO_LARGE;
  size_t mark = b->len;
  int rc = put_u8(b, REC_ATTR);
  if (rc == WARREN_OK) rc = put_value(b, key, v);
  if (rc != WARREN_OK) {
    b->len = mark;
    return rc;
  }
  b->nattrs++;
  return WARREN_OK;
}

static int put_values(wr_extras_buf *b, const warren_attribute *a, size_t n,
                      size_t max) {
  if (n > max) return WARREN_TOO_LARGE;
  if (n && !a) return WARREN_INVALID;
  int rc = put_u32(b, (uint32_t)n);
  for (size_t i = 0; i < n && rc == WARREN_OK; i++)
    rc = put_value(b, a[i].key, &a[i].value);
  return rc;
}

int wr_extras_event(wr_extras_buf *b, const char *name, uint64_t time_ns,
                    const warren_attribute *attrs, size_t n) {
  if (b->nevents >= WR_EXTRAS_MAX_EVENTS) return WARREN_TOO_LARGE;
  if (!name || !*name || !short_enough(name, WR_EXTRAS_MAX_VALUE))
    return WARREN_INVALID;
  size_t mark = b->len;
  int rc = put_u8(b, REC_EVENT);
  if (rc == WARREN_OK) rc = put_str(b, name, strlen(name));
  if (rc == WARREN_OK) rc = put_u64(b, time_ns);
  if (rc == WARREN_OK) rc = put_values(b, attrs, n, WR_EXTRAS_MAX_EVENT_ATTRS);
  if (rc != WARREN_OK) {
    b->len = mark;
    return rc;
  }
  b->nevents++;
  return WARREN_OK;
}

/* Headers Warren writes itself on a follow-up. */
static int reserved_header(const char *k) {
  static const char *const own[] = {"traceparent", "tracestate",
                                    "warren-signature",
                                    "warren-countersignature", "warren-copy"};
  for (size_t i = 0; i < sizeof own / sizeof *own; i++)
    if (strcasecmp(k, own[i]) == 0) return 1;
  return 0;
}

static int put_short(wr_extras_buf *b, const char *s) {
  return put_str(b, s ? s : "", s ? strlen(s) : 0);
}

int wr_extras_followup(wr_extras_buf *b, const warren_publish *pub,
                       const char *default_id) {
  if (b->nfollow >= WR_EXTRAS_MAX_FOLLOWUPS) return WARREN_TOO_LARGE;
  if (!pub || pub->size < sizeof(uint32_t) ||
      !WARREN_STRUCT_HAS(pub, warren_publish, transient) || !pub->routing_key ||
      (!pub->body && pub->body_len))
    return WARREN_INVALID;
  const char *shorts[] = {pub->exchange, pub->routing_key, pub->content_type,
                          pub->message_id ? pub->message_id : default_id,
                          pub->correlation_id};
  for (size_t i = 0; i < 5; i++)
    if (!short_enough(shorts[i], WR_EXTRAS_MAX_SHORTSTR)) return WARREN_INVALID;
  for (size_t i = 0; i < pub->n_headers && pub->headers; i++)
    if (!pub->headers[i].key || reserved_header(pub->headers[i].key))
      return WARREN_INVALID;
  size_t mark = b->len;
  int rc = put_u8(b, REC_FOLLOWUP);
  for (size_t i = 0; i < 5 && rc == WARREN_OK; i++)
    rc = put_short(b, shorts[i]);
  if (rc == WARREN_OK) rc = put_u8(b, pub->transient ? 1 : 0);
  if (rc == WARREN_OK)
    rc = put_values(b, pub->headers, pub->n_headers, WR_EXTRAS_MAX_HEADERS);
  if (rc == WARREN_OK) rc = put_u64(b, pub->body_len);
  if (rc == WARREN_OK) rc = reserve(b, pub->body_len);
  if (rc != WARREN_OK) {
    b->len = mark;
    return rc;
  }
  put(b, pub->body, pub->body_len);
  b->nfollow++;
  return WARREN_OK;
}

int wr_extras_result(wr_extras_buf *b, const void *body, size_t len,
                     const char *content_type, size_t max) {
  if ((!body && len) || !short_enough(content_type, WR_EXTRAS_MAX_SHORTSTR))
    return WARREN_INVALID;
  if (len > max || len > WR_RESULT_MAX) return WARREN_TOO_LARGE;
  /* The last call wins: an earlier result is cut out first, so setting
   * one again and again cannot fill the buffer. It is put back if the new
   * one does not fit. */
  unsigned char *old = NULL;
  size_t old_at = 0, old_len = 0;
  if (b->result_at) {
    old_at = b->result_at - 1;
    uint32_t tl;
    uint64_t bl;
    memcpy(&tl, b->p + old_at + 1, 4);
    memcpy(&bl, b->p + old_at + 1 + 4 + tl + 1, 8);
    old_len = 1 + 4 + (size_t)tl + 1 + 8 + (size_t)bl;
    old = malloc(old_len);
    if (!old) return WARREN_NOMEM;
    memcpy(old, b->p + old_at, old_len);
    memmove(b->p + old_at, b->p + old_at + old_len, b->len - old_at - old_len);
    b->len -= old_len;
    b->result_at = 0;
  }
  size_t mark = b->len;
  int rc = put_u8(b, REC_RESULT);
  if (rc == WARREN_OK) rc = put_short(b, content_type);
  if (rc == WARREN_OK) rc = put_u64(b, len);
  if (rc == WARREN_OK) rc = reserve(b, len);
  if (rc != WARREN_OK) {
    b->len = mark;
    if (old) { /* the space it took is there still */
      memcpy(b->p + b->len, old, old_len);
      b->result_at = b->len + 1;
      b->len += old_len;
    }
    free(old);
    return rc;
  }
  put(b, body, len);
  b->result_at = mark + 1;
  free(old);
  return WARREN_OK;
}

void wr_extras_clear(wr_extras_buf *b) {
  b->len = 0;
  b->nattrs = b->nevents = b->nfollow = 0;
  b->result_at = 0;
  if (b->cap > KEEP_CAP) wr_extras_free(b);
}

void wr_extras_free(wr_extras_buf *b) {
  free(b->p);
  *b = (wr_extras_buf){0};
}

/* ---- reading ------------------------------------------------------------- */

typedef struct rd {
  const unsigned char *p, *end;
  int bad;
} rd;

static const unsigned char *take(rd *r, size_t n) {
  if (r->bad || (size_t)(r->end - r->p) < n) {
    r->bad = 1;
    return NULL;
  }
  const unsigned char *at = r->p;
  r->p += n;
  return at;
}

static uint8_t get_u8(rd *r) {
  const unsigned char *v = take(r, 1);
  return v ? *v : 0;
}

static uint32_t get_u32(rd *r) {
  uint32_t v = 0;
  const unsigned char *at = take(r, 4);
  if (at) memcpy(&v, at, 4);
  return v;
}

static uint64_t get_u64(rd *r) {
  uint64_t v = 0;
  const unsigned char *at = take(r, 8);
  if (at) memcpy(&v, at, 8);
  return v;
}

static wr_str get_str(rd *r, size_t max) {
  wr_str s = {"", 0};
  uint32_t n = get_u32(r);
  if (n > max) r->bad = 1;
  const unsigned char *at = r->bad ? NULL : take(r, (size_t)n + 1);
  if (!at || at[n] != 0) {
    r->bad = 1;
    return s;
  }
  return (wr_str){(const char *)at, n};
}

static void get_value(rd *r, wr_attr *a) {
  wr_str k = get_str(r, WR_EXTRAS_MAX_VALUE);
  *a = (wr_attr){.key = k.s};
  uint8_t t = get_u8(r);
  uint64_t u;
  switch (t) {
    case WARREN_VALUE_STRING: {
      wr_str v = get_str(r, WR_EXTRAS_MAX_VALUE);
      a->type = WR_ATTR_STRING;
      a->str = v.s;
      a->len = v.len;
      return;
    }
    case WARREN_VALUE_INT:
    case WARREN_VALUE_BOOL:
      a->type = t == WARREN_VALUE_INT ? WR_ATTR_INT : WR_ATTR_BOOL;
      a->i = (int64_t)get_u64(r);
      return;
    case WARREN_VALUE_DOUBLE:
      u = get_u64(r);
      a->type = WR_ATTR_DOUBLE;
      memcpy(&a->d, &u, 8);
      return;
    default:
      r->bad = 1;
  }
}

static void set_attr(wr_extras *x, const wr_attr *a) {
  for (size_t i = 0; i < x->nattrs; i++)
    if (strcmp(x->attrs[i].key, a->key) == 0) {
      x->attrs[i] = *a;
      return;
    }
  x->attrs[x->nattrs++] = *a;
}

static void get_followup(rd *r, wr_followup *f) {
  wr_str *s[] = {&f->exchange, &f->routing_key, &f->content_type,
                 &f->message_id, &f->correlation_id};
  for (size_t i = 0; i < 5; i++) *s[i] = get_str(r, WR_EXTRAS_MAX_SHORTSTR);
  f->transient = get_u8(r) != 0;
  uint32_t n = get_u32(r);
  if (n > WR_EXTRAS_MAX_HEADERS) r->bad = 1;
  for (uint32_t i = 0; i < n && !r->bad; i++) get_value(r, &f->headers[i]);
  f->nheaders = n;
  uint64_t bl = get_u64(r);
  f->body = take(r, (size_t)bl);
  f->body_len = (size_t)bl;
  if (bl > WR_EXTRAS_MAX_BYTES) r->bad = 1;
}

int wr_extras_parse(const unsigned char *p, size_t len, wr_extras *out) {
  memset(out, 0, offsetof(wr_extras, ev_attrs));
  out->follow = NULL;
  out->nfollow = 0;
  out->has_result = 0;
  out->result_type = (wr_str){"", 0};
  out->result = NULL;
  out->result_len = 0;
  rd r = {p, p + len, len > WR_EXTRAS_MAX_BYTES + 4096};
  size_t nev_attrs = 0, cap = 0;
  while (!r.bad && r.p < r.end) {
    uint8_t kind = get_u8(&r);
    if (kind == REC_ATTR && out->nattrs < WR_EXTRAS_MAX_ATTRS) {
      wr_attr a;
      get_value(&r, &a);
      if (!r.bad) set_attr(out, &a);
    } else if (kind == REC_EVENT && out->nevents < WR_EXTRAS_MAX_EVENTS) {
      wr_span_event *e = &out->events[out->nevents++];
      e->name = get_str(&r, WR_EXTRAS_MAX_VALUE).s;
      e->time_ns = get_u64(&r);
      uint32_t n = get_u32(&r);
      if (n > WR_EXTRAS_MAX_EVENT_ATTRS) r.bad = 1;
      e->attrs = &out->ev_attrs[nev_attrs];
      for (uint32_t i = 0; i < n && !r.bad; i++)
        get_value(&r, &out->ev_attrs[nev_attrs++]);
      e->nattrs = n;
    } else if (kind == REC_RESULT) {
      out->result_type = get_str(&r, WR_EXTRAS_MAX_SHORTSTR);
      uint64_t bl = get_u64(&r);
      if (bl > WR_RESULT_MAX) r.bad = 1;
      out->result = take(&r, (size_t)bl);
      out->result_len = (size_t)bl;
      out->has_result = !r.bad;
    } else if (kind == REC_FOLLOWUP && out->nfollow < WR_EXTRAS_MAX_FOLLOWUPS) {
      if (out->nfollow == cap) {
        cap = cap ? cap * 2 : 4;
        wr_followup *f = realloc(out->follow, cap * sizeof *f);
        if (!f) {
          r.bad = 1;
          break;
        }
        out->follow = f;
      }
      get_followup(&r, &out->follow[out->nfollow++]);
    } else {
      r.bad = 1;
    }
  }
  if (r.bad) {
    wr_extras_release(out);
    out->nattrs = out->nevents = 0;
    out->has_result = 0;
    return -1;
  }
  return 0;
}

void wr_extras_release(wr_extras *x) {
  free(x->follow);
  x->follow = NULL;
  x->nfollow = 0;
}
