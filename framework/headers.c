#include "headers.h"

#include "field.h"
#include "log.h"

#include <string.h>

#include <warren/status.h>

static warren_value_type type_of(const amqp_field_value_t *v) {
  switch (v->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
      return WARREN_VALUE_STRING;
    case AMQP_FIELD_KIND_I8:
    case AMQP_FIELD_KIND_U8:
    case AMQP_FIELD_KIND_I16:
    case AMQP_FIELD_KIND_U16:
    case AMQP_FIELD_KIND_I32:
    case AMQP_FIELD_KIND_U32:
    case AMQP_FIELD_KIND_I64:
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      return WARREN_VALUE_INT;
    case AMQP_FIELD_KIND_F32:
    case AMQP_FIELD_KIND_F64:
      return WARREN_VALUE_DOUBLE;
    case AMQP_FIELD_KIND_BOOLEAN:
      return WARREN_VALUE_BOOL;
    case AMQP_FIELD_KIND_VOID:
      return WARREN_VALUE_NONE;
    default:
      return WARREN_VALUE_OTHER;
  }
}

static size_t value_size(const amqp_field_value_t *v) {
  switch (type_of(v)) {
    case WARREN_VALUE_STRING:
      return 4 + v->value.bytes.len + 1;
    case WARREN_VALUE_INT:
      return 8;
    case WARREN_VALUE_DOUBLE:
      return 8;
    case WARREN_VALUE_BOOL:
      return 1;
    default:
      return 0;
  }
}

static size_t entries_kept(const amqp_table_t *t) {
  return (size_t)t->num_entries < WR_HDR_MAX_ENTRIES ? (size_t)t->num_entries
                                                     : WR_HDR_MAX_ENTRIES;
}

size_t wr_hdr_encoded_size(const amqp_table_t *t) {
  size_t n = 4;
  for (size_t i = 0; i < entries_kept(t); i++)
    n += 4 + t->entries[i].key.len + 1 + 1 + value_size(&t->entries[i].value);
  return n;
}

static unsigned char *put(unsigned char *p, const void *src, size_t n) {
  if (n) memcpy(p, src, n);
  return p + n;
}

void wr_hdr_encode(const amqp_table_t *t, unsigned char *p) {
  uint32_t count = (uint32_t)entries_kept(t);
  p = put(p, &count, 4);
  for (size_t i = 0; i < count; i++) {
    const amqp_table_entry_t *e = &t->entries[i];
    uint32_t klen = (uint32_t)e->key.len;
    uint8_t type = (uint8_t)type_of(&e->value);
    p = put(p, &klen, 4);
    p = put(p, e->key.bytes, klen);
    *p++ = 0;
    *p++ = type;
    switch (type) {
      case WARREN_VALUE_STRING: {
        uint32_t len = (uint32_t)e->value.value.bytes.len;
        p = put(p, &len, 4);
        p = put(p, e->value.value.bytes.bytes, len);
        *p++ = 0;
        break;
      }
      case WARREN_VALUE_INT: {
        int64_t i64 = 0;
        wr_field_int(&e->value, &i64);
        p = put(p, &i64, 8);
        break;
      }
      case WARREN_VALUE_DOUBLE: {
        double d = e->value.kind == AMQP_FIELD_KIND_F32 ? e->value.value.f32
                                                        : e->value.value.f64;
        p = put(p, &d, 8);
        break;
      }
      case WARREN_VALUE_BOOL:
        *p++ = e->value.value.boolean ? 1 : 0;
        break;
      default:
        break;
    }
  }
}

/* Bounds-checked reader over the blob. */
typedef struct rd {
  const unsigned char *p, *end;
} rd;

static int take(rd *r, void *dst, size_t n) {
  if ((size_t)(r->end - r->p) < n) return -1;
  if (dst) memcpy(dst, r->p, n);
  r->p += n;
  return 0;
}

/* A length-prefixed, NUL-terminated string; returns its start or NULL. */
static const char *take_str(rd *r, size_t *len) {
  uint32_t n;
  if (take(r, &n, 4) || (size_t)(r->end - r->p) < (size_t)n + 1 || r->p[n] != 0)
    return NULL;
  const char *s = (const char *)r->p;
  r->p += (size_t)n + 1;
  *len = n;
  return s;
}

int wr_hdr_parse(struct warren_headers *h, const unsigned char *blob,
                 size_t len) {
  rd r = {blob, blob + len};
  uint32_t count;
  h->count = 0;
  if (take(&r, &count, 4) || count > WR_HDR_MAX_ENTRIES) return WARREN_INVALID;
  for (uint32_t i = 0; i < count; i++) {
    wr_hdr_entry *e = &h->entries[i];
    size_t klen;
    uint8_t type;
    memset(e, 0, sizeof *e);
    if (!(e->name = take_str(&r, &klen)) || take(&r, &type, 1)) goto bad;
    e->value.type = (warren_value_type)type;
    switch (type) {
      case WARREN_VALUE_STRING:
        if (!(e->value.str = take_str(&r, &e->value.len))) goto bad;
        break;
      case WARREN_VALUE_INT:
        if (take(&r, &e->value.i, 8)) goto bad;
        break;
      case WARREN_VALUE_DOUBLE:
        if (take(&r, &e->value.d, 8)) goto bad;
        break;
      case WARREN_VALUE_BOOL: {
        uint8_t b;
        if (take(&r, &b, 1) || b > 1) goto bad;
        e->value.i = b;
        break;
      }
      case WARREN_VALUE_NONE:
      case WARREN_VALUE_OTHER:
        break;
      default:
        goto bad;
    }
  }
  if (r.p != r.end) goto bad;
  h->count = count;
  return WARREN_OK;
bad:
  h->count = 0;
  return WARREN_INVALID;
}

int wr_hdr_get(const struct warren_headers *h, const char *name,
               warren_value *out) {
  for (size_t i = 0; h && i < h->count; i++) {
    if (strcmp(h->entries[i].name, name) == 0) {
      *out = h->entries[i].value;
      return WARREN_OK;
    }
  }
  memset(out, 0, sizeof *out);
  return WARREN_NOT_FOUND;
}

size_t wr_hdr_count(const struct warren_headers *h) {
  return h ? h->count : 0;
}

int wr_hdr_at(const struct warren_headers *h, size_t index, const char **name,
              warren_value *out) {
  if (!h || index >= h->count) {
    if (out) memset(out, 0, sizeof *out);
    return WARREN_NOT_FOUND;
  }
  if (name) *name = h->entries[index].name;
  if (out) *out = h->entries[index].value;
  return WARREN_OK;
}

const amqp_table_t *wr_hdr_visible(const amqp_basic_properties_t *p,
                                   const char *handler, int *warned,
                                   size_t *out_bytes) {
  static const amqp_table_t none = {0, NULL};
  *out_bytes = wr_hdr_encoded_size(&none);
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return &none;
  const amqp_table_t *t = &p->headers;
  size_t bytes = wr_hdr_encoded_size(t);
  int over = bytes > WR_HDR_MAX_BLOB;
  if (!over) *out_bytes = bytes;
  if ((over || t->num_entries > WR_HDR_MAX_ENTRIES) && !*warned) {
    *warned = 1;
    if (over)
      wr_warn(
          "handler %s: a job's headers take %zu bytes, over %d: the "
          "handler sees none (they are kept on its copies); said once",
          handler, bytes, WR_HDR_MAX_BLOB);
    else
      wr_warn(
          "handler %s: a job has %d headers: the handler sees the first "
          "%d (all are kept on its copies); said once",
          handler, t->num_entries, WR_HDR_MAX_ENTRIES);
  }
  return over ? &none : t;
}
