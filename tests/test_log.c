/* The log sink (common/log.c): levels from plugins are clamped, outside
 * text is escaped. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "log.h"

/* Run fn with stderr captured into out. */
static void capture(void (*fn)(void), char *out, size_t len) {
  fflush(stderr);
  int saved = dup(2);
  FILE *tmp = tmpfile();
  cr_assert(tmp);
  dup2(fileno(tmp), 2);
  fn();
  dup2(saved, 2);
  close(saved);
  rewind(tmp);
  size_t n = fread(out, 1, len - 1, tmp);
  out[n] = '\0';
  fclose(tmp);
}

static void odd_levels(void) {
  wr_log_level = WARREN_LOG_DEBUG;
  wr_log((warren_log_level)-5, "below %d", 1);
  wr_log((warren_log_level)99, "above %d", 2);
}

Test(log, out_of_range_levels_are_clamped_not_used_as_an_index) {
  char out[1024];
  capture(odd_levels, out, sizeof out);
  cr_assert(strstr(out, " error ") && strstr(out, "below 1"), "%s", out);
  cr_assert(strstr(out, " debug ") && strstr(out, "above 2"), "%s", out);
}

static void hostile(void) {
  wr_log_level = WARREN_LOG_INFO;
  wr_info("job %s failed", "evil\nFAKE\x1b[2J\x7f");
}

Test(log, control_characters_are_escaped_one_line_per_call) {
  char out[1024];
  capture(hostile, out, sizeof out);
  cr_assert(strstr(out, "job evil\\x0aFAKE\\x1b[2J\\x7f failed\n"), "%s", out);
  cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "one line: %s", out);
}

Test(log, escape_truncates_to_the_buffer) {
  char d[8];
  cr_assert_eq(wr_escape(d, sizeof d, "abc\ndef", 7), 7, "%s", d);
  cr_assert_str_eq(d, "abc\\x0a", "no half escape");
}

static void json_job_line(void) {
  wr_log_level = WARREN_LOG_INFO;
  wr_log_format = WR_LOG_JSON;
  const char id[] = "a\n\"b\"\xff\xc3\xa9";
  wr_log_job f = {"h", id, sizeof id - 1, 2, "failed", 1.5};
  wr_log_job_line(WARREN_LOG_INFO, &f, "job %s", "finished\n{\"x\":1}");
  wr_log_format = WR_LOG_TEXT;
}

Test(log, a_json_line_keeps_hostile_text_inside_its_fields) {
  char out[2048];
  capture(json_job_line, out, sizeof out);
  cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "one line: %s", out);
  cJSON *j = cJSON_Parse(out);
  cr_assert(j, "JSON: %s", out);
  cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "message_id");
  /* Control characters and the byte that is not UTF-8 escaped; the valid
   * two-byte character kept. */
  cr_assert_str_eq(id->valuestring, "a\\x0a\"b\"\\xff\xc3\xa9");
  cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "msg")->valuestring,
                   "job finished\\x0a{\"x\":1}");
  cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "handler")->valuestring,
                   "h");
  cr_assert_eq(cJSON_GetObjectItemCaseSensitive(j, "attempt")->valuedouble, 2);
  cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "outcome")->valuestring,
                   "failed");
  cr_assert_eq(cJSON_GetObjectItemCaseSensitive(j, "duration_ms")->valuedouble,
               1.5);
  cJSON_Delete(j);
}

static void logfmt_job_line(void) {
  wr_log_level = WARREN_LOG_INFO;
  wr_log_format = WR_LOG_LOGFMT;
  wr_log_job f = {"h", "x=1 \"y\"", 7, 1, "acked", -1};
  wr_log_job_line(WARREN_LOG_INFO, &f, "done");
  wr_log_format = WR_LOG_TEXT;
}

Test(log, logfmt_quotes_values_with_spaces_equals_and_quotes) {
  char out[2048];
  capture(logfmt_job_line, out, sizeof out);
  cr_assert(strncmp(out, "ts=", 3) == 0, "%s", out);
  cr_assert(strstr(out, " level=info pid="), "%s", out);
  cr_assert(strstr(out,
                   " handler=h msg=done message_id=\"x=1 \\\"y\\\"\" "
                   "attempt=1 outcome=acked\n"),
            "%s", out);
  cr_assert(!strstr(out, "duration_ms"), "not run: no duration: %s", out);
}
