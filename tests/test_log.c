/* The log sink (framework/log.c): levels from plugins are clamped, outside
 * text is escaped. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
