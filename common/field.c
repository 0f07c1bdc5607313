#include "field.h"

#include <string.h>

int wr_field_int(const amqp_field_value_t *v, int64_t *out) {
  switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
      *out = v->value.i8;
      return 1;
    case AMQP_FIELD_KIND_U8:
      *out = v->value.u8;
      return 1;
    case AMQP_FIELD_KIND_I16:
      *out = v->value.i16;
      return 1;
    case AMQP_FIELD_KIND_U16:
      *out = v->value.u16;
      return 1;
    case AMQP_FIELD_KIND_I32:
      *out = v->value.i32;
      return 1;
    case AMQP_FIELD_KIND_U32:
      *out = v->value.u32;
      return 1;
    case AMQP_FIELD_KIND_I64:
      *out = v->value.i64;
      return 1;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      *out = (int64_t)v->value.u64;
      return 1;
    default:
      return 0;
  }
}

static int named(const amqp_table_entry_t *e, const char *key, size_t klen) {
  return e->key.len == klen && memcmp(e->key.bytes, key, klen) == 0;
}

amqp_bytes_t wr_field_header_str(const amqp_basic_properties_t *p,
                                 const char *key) {
  amqp_bytes_t none = {0, ""};
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return none;
  size_t klen = strlen(key);
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    if (named(e, key, klen) && (e->value.kind == AMQP_FIELD_KIND_UTF8 ||
                                e->value.kind == AMQP_FIELD_KIND_BYTES))
      return e->value.value.bytes;
  }
  return none;
}

int wr_field_header_int(const amqp_basic_properties_t *p, const char *key,
                        int64_t *out) {
  if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG)) return 0;
  size_t klen = strlen(key);
  for (int i = 0; i < p->headers.num_entries; i++) {
    const amqp_table_entry_t *e = &p->headers.entries[i];
    if (named(e, key, klen) && wr_field_int(&e->value, out)) return 1;
  }
  return 0;
}
