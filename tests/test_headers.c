#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <warren/status.h>

#include "field.h"
#include "headers.h"

static struct warren_headers h;

static unsigned char *encode(amqp_table_t *t, size_t *len) {
  *len = wr_hdr_encoded_size(t);
  unsigned char *b = malloc(*len);
  wr_hdr_encode(t, b);
  return b;
}

Test(headers, round_trip_of_every_scalar_kind) {
  amqp_table_entry_t e[] = {
      {amqp_cstring_bytes("s"),
       {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes("text")}}},
      {amqp_cstring_bytes("i8"), {AMQP_FIELD_KIND_I8, {.i8 = -5}}},
      {amqp_cstring_bytes("u32"), {AMQP_FIELD_KIND_U32, {.u32 = 4000000000u}}},
      {amqp_cstring_bytes("i64"),
       {AMQP_FIELD_KIND_I64, {.i64 = -1234567890123LL}}},
      {amqp_cstring_bytes("f"), {AMQP_FIELD_KIND_F32, {.f32 = 1.5f}}},
      {amqp_cstring_bytes("d"), {AMQP_FIELD_KIND_F64, {.f64 = 2.25}}},
      {amqp_cstring_bytes("b"), {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
      {amqp_cstring_bytes("v"), {AMQP_FIELD_KIND_VOID, {.i8 = 0}}},
      {amqp_cstring_bytes("t"), {AMQP_FIELD_KIND_TABLE, {.table = {0, NULL}}}},
  };
  amqp_table_t t = {9, e};
  size_t len;
  unsigned char *b = encode(&t, &len);
  cr_assert_eq(wr_hdr_parse(&h, b, len), WARREN_OK);
  cr_assert_eq(wr_hdr_count(&h), 9);
  warren_value v;
  cr_assert_eq(wr_hdr_get(&h, "s", &v), WARREN_OK);
  cr_assert_eq(v.type, WARREN_VALUE_STRING);
  cr_assert_eq(v.len, 4);
  cr_assert_str_eq(v.str, "text");
  wr_hdr_get(&h, "i8", &v);
  cr_assert_eq(v.i, -5);
  wr_hdr_get(&h, "u32", &v);
  cr_assert_eq(v.i, 4000000000LL);
  wr_hdr_get(&h, "i64", &v);
  cr_assert_eq(v.i, -1234567890123LL);
  wr_hdr_get(&h, "f", &v);
  cr_assert_float_eq(v.d, 1.5, 1e-9);
  wr_hdr_get(&h, "d", &v);
  cr_assert_float_eq(v.d, 2.25, 1e-9);
  wr_hdr_get(&h, "b", &v);
  cr_assert_eq(v.type, WARREN_VALUE_BOOL);
  cr_assert_eq(v.i, 1);
  wr_hdr_get(&h, "v", &v);
  cr_assert_eq(v.type, WARREN_VALUE_NONE);
  wr_hdr_get(&h, "t", &v);
  cr_assert_eq(v.type, WARREN_VALUE_OTHER);
  cr_assert_eq(wr_hdr_get(&h, "nope", &v), WARREN_NOT_FOUND);
  cr_assert_eq(v.type, WARREN_VALUE_NONE);
  const char *name;
  cr_assert_eq(wr_hdr_at(&h, 2, &name, &v), WARREN_OK);
  cr_assert_str_eq(name, "u32");
  cr_assert_eq(wr_hdr_at(&h, 9, &name, &v), WARREN_NOT_FOUND);
  free(b);
}

Test(headers, binary_string_keeps_embedded_nul) {
  char raw[] = {'a', 0, 'b'};
  amqp_table_entry_t e = {amqp_cstring_bytes("bin"),
                          {AMQP_FIELD_KIND_BYTES, {.bytes = {3, raw}}}};
  amqp_table_t t = {1, &e};
  size_t len;
  unsigned char *b = encode(&t, &len);
  cr_assert_eq(wr_hdr_parse(&h, b, len), WARREN_OK);
  warren_value v;
  wr_hdr_get(&h, "bin", &v);
  cr_assert_eq(v.len, 3);
  cr_assert_eq(memcmp(v.str, raw, 3), 0);
  free(b);
}

Test(headers, every_truncation_is_rejected) {
  amqp_table_entry_t e[] = {
      {amqp_cstring_bytes("key"),
       {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes("value")}}},
      {amqp_cstring_bytes("n"), {AMQP_FIELD_KIND_I32, {.i32 = 7}}},
  };
  amqp_table_t t = {2, e};
  size_t len;
  unsigned char *b = encode(&t, &len);
  for (size_t cut = 0; cut < len; cut++) {
    cr_assert_eq(wr_hdr_parse(&h, b, cut), WARREN_INVALID, "cut at %zu", cut);
    cr_assert_eq(wr_hdr_count(&h), 0);
  }
  b[len - 9] = 99; /* an unknown type byte */
  cr_assert_eq(wr_hdr_parse(&h, b, len), WARREN_INVALID);
  free(b);
}

Test(headers, empty_table) {
  amqp_table_t t = {0, NULL};
  size_t len;
  unsigned char *b = encode(&t, &len);
  cr_assert_eq(len, 4);
  cr_assert_eq(wr_hdr_parse(&h, b, len), WARREN_OK);
  cr_assert_eq(wr_hdr_count(&h), 0);
  free(b);
}

Test(headers, a_header_is_read_by_name_and_kind) {
  amqp_table_entry_t e[] = {
      {amqp_cstring_bytes("n"), {AMQP_FIELD_KIND_BOOLEAN, {.boolean = 1}}},
      {amqp_cstring_bytes("n"), {AMQP_FIELD_KIND_U16, {.u16 = 65000}}},
      {amqp_cstring_bytes("s"), {AMQP_FIELD_KIND_I8, {.i8 = -3}}},
      {amqp_cstring_bytes("s"),
       {AMQP_FIELD_KIND_BYTES, {.bytes = amqp_cstring_bytes("raw")}}},
      {amqp_cstring_bytes("t"), {AMQP_FIELD_KIND_TIMESTAMP, {.u64 = 1700}}}};
  amqp_basic_properties_t p = {.headers = {5, e}};
  p._flags = AMQP_BASIC_HEADERS_FLAG;
  int64_t v = 7;
  int got = wr_field_header_int(&p, "n", &v);
  cr_assert(got && v == 65000, "the first integer of that name: %lld",
            (long long)v);
  got = wr_field_header_int(&p, "t", &v);
  cr_assert(got && v == 1700, "a timestamp is an integer");
  amqp_bytes_t s = wr_field_header_str(&p, "s");
  cr_assert(s.len == 3 && !memcmp(s.bytes, "raw", 3), "a byte array is text");
  v = 7;
  got = wr_field_header_int(&p, "missing", &v);
  cr_assert(!got && v == 7, "absent: untouched");
  s = wr_field_header_str(&p, "n");
  cr_assert(s.len == 0 && s.bytes && !strcmp(s.bytes, ""), "no string: \"\"");
  p._flags = 0;
  got = wr_field_header_int(&p, "n", &v);
  cr_assert_not(got, "no headers flag: no headers");
}
