/* The tracing configuration: the `tracing` group and the OTEL_* variables
 * over it (otel/otelcfg.c). The environment is a table here. */
#include <criterion/criterion.h>
#include <libconfig.h>
#include <string.h>
#include <unistd.h>

#include "otelcfg.h"

static const char *const *env_table;

static const char *fake_env(const char *name) {
  for (const char *const *p = env_table; p && *p; p += 2)
    if (strcmp(p[0], name) == 0) return p[1];
  return NULL;
}

static config_t cf;
static char err[2048];

/* Load from file text (NULL: no tracing group) and name/value pairs. */
static int load(const char *text, const char *const *env, wr_otel_cfg *out) {
  env_table = env;
  config_init(&cf);
  const config_setting_t *g = NULL;
  if (text) {
    cr_assert(config_read_string(&cf, text), "%s at line %d",
              config_error_text(&cf), config_error_line(&cf));
    g = config_lookup(&cf, "tracing");
  }
  int rc = wr_otel_cfg_load(g, fake_env, out, err, sizeof err);
  config_destroy(&cf);
  return rc;
}

static const char *res(const wr_otel_cfg *c, const char *key) {
  for (size_t i = 0; i < c->n_resource; i++)
    if (strcmp(c->resource[i].key, key) == 0) return c->resource[i].value;
  return NULL;
}

static const char *hdr(const wr_otel_cfg *c, const char *key) {
  for (size_t i = 0; i < c->n_headers; i++)
    if (strcmp(c->headers[i].key, key) == 0) return c->headers[i].value;
  return NULL;
}

Test(otelcfg, without_a_group_or_an_endpoint_tracing_is_off) {
  wr_otel_cfg c;
  cr_assert_eq(load(NULL, NULL, &c), 0, "%s", err);
  cr_assert_eq(c.enabled, 0);
}

Test(otelcfg, an_empty_group_turns_tracing_on_with_the_defaults) {
  wr_otel_cfg c;
  cr_assert_eq(load("tracing = {};", NULL, &c), 0, "%s", err);
  cr_assert_eq(c.enabled, 1);
  cr_assert_str_eq(c.endpoint, "http://localhost:4318/v1/traces");
  cr_assert_str_eq(c.service_name, "warren");
  cr_assert_eq(c.sampler, WR_SAMPLER_PARENT_ALWAYS_ON);
  cr_assert_float_eq(c.ratio, 1.0, 1e-12);
  cr_assert_eq(c.link_parent, 0);
  cr_assert_eq(c.max_queue, 2048);
  cr_assert_eq(c.max_batch, 512);
  cr_assert_float_eq(c.delay, 1.0, 1e-12);
  cr_assert_float_eq(c.timeout, 10.0, 1e-12);
  cr_assert_float_eq(c.retry_max, 30.0, 1e-12);
  cr_assert_eq(c.n_headers, 0);
  char host[256] = "";
  gethostname(host, sizeof host);
  cr_assert_str_eq(res(&c, "host.name"), host);
  cr_assert_str_eq(res(&c, "service.version"), WARREN_VERSION_TEST);
  cr_assert_str_eq(res(&c, "telemetry.sdk.name"), "warren");
  cr_assert_str_eq(res(&c, "telemetry.sdk.language"), "c");
  cr_assert_null(res(&c, "service.name"));
}

Test(otelcfg, every_file_setting_is_read) {
  wr_otel_cfg c;
  const char *text =
      "tracing = { endpoint = \"https://collector:4318/\";"
      " service_name = \"orders\";"
      " resource_attributes = { team = \"payments\"; host_name = \"x\"; };"
      " headers = { Authorization = \"Bearer t\"; x-tenant = \"7\"; };"
      " sampler = \"traceidratio\"; sampler_arg = 0.25; parent = \"link\";"
      " max_queue = 100; max_batch = 10; delay = 0.5; timeout = 3;"
      " retry_max = 0; enabled = true; };";
  cr_assert_eq(load(text, NULL, &c), 0, "%s", err);
  cr_assert_eq(c.enabled, 1);
  cr_assert_str_eq(c.endpoint, "https://collector:4318/v1/traces");
  cr_assert_str_eq(c.service_name, "orders");
  cr_assert_str_eq(res(&c, "team"), "payments");
  cr_assert_str_eq(res(&c, "host_name"), "x");
  cr_assert_str_eq(hdr(&c, "Authorization"), "Bearer t");
  cr_assert_str_eq(hdr(&c, "x-tenant"), "7");
  cr_assert_eq(c.sampler, WR_SAMPLER_RATIO);
  cr_assert_float_eq(c.ratio, 0.25, 1e-12);
  cr_assert_eq(c.link_parent, 1);
  cr_assert_eq(c.max_queue, 100);
  cr_assert_eq(c.max_batch, 10);
  cr_assert_float_eq(c.delay, 0.5, 1e-12);
  cr_assert_float_eq(c.timeout, 3, 1e-12);
  cr_assert_float_eq(c.retry_max, 0, 1e-12);
}

Test(otelcfg, dotted_attribute_keys_are_written_as_a_string_in_the_file) {
  wr_otel_cfg c;
  cr_assert_eq(load("tracing = { resource_attributes = "
                    "\"deployment.environment=prod, host.name=h%2C1\"; };",
                    NULL, &c),
               0, "%s", err);
  cr_assert_str_eq(res(&c, "deployment.environment"), "prod");
  /* The user's value overrides the default one. */
  cr_assert_str_eq(res(&c, "host.name"), "h,1");
}

Test(otelcfg, traces_endpoint_is_used_as_is_and_wins_over_endpoint) {
  wr_otel_cfg c;
  cr_assert_eq(load("tracing = { endpoint = \"http://a:1\";"
                    " traces_endpoint = \"http://b:2/custom\"; };",
                    NULL, &c),
               0, "%s", err);
  cr_assert_str_eq(c.endpoint, "http://b:2/custom");
  cr_assert_eq(load("tracing = { endpoint = \"http://a:1\"; };", NULL, &c), 0);
  cr_assert_str_eq(c.endpoint, "http://a:1/v1/traces");
}

Test(otelcfg, unknown_keys_and_bad_values_are_each_named) {
  wr_otel_cfg c;
  const char *text =
      "tracing = { endpiont = \"http://x\"; sampler = \"sometimes\";"
      " sampler_arg = 1.5; parent = \"child\"; max_queue = 0;"
      " max_batch = \"many\"; delay = -1; timeout = \"10\";"
      " headers = { bad = 3; }; endpoint = \"ftp://x\"; enabled = 1; };";
  cr_assert_eq(load(text, NULL, &c), -1);
  const char *want[] = {"tracing.endpiont: unknown setting",
                        "tracing.sampler: must be",
                        "tracing.sampler_arg: must be 0..1",
                        "tracing.parent: must be",
                        "tracing.max_queue: must be 1..",
                        "tracing.max_batch: must be an integer",
                        "tracing.delay: must be",
                        "tracing.timeout: must be a number",
                        "tracing.headers.bad: must be a string",
                        "tracing.endpoint: must be an http",
                        "tracing.enabled: must be true or false"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_assert(strstr(err, want[i]), "missing '%s' in:\n%s", want[i], err);
}

Test(otelcfg, a_header_value_cannot_inject_a_header_line) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_HEADERS", "a=1%0D%0AHost: evil",
                       NULL};
  cr_assert_eq(load(NULL, env, &c), -1);
  cr_assert(strstr(err, "OTEL_EXPORTER_OTLP_HEADERS: 'a': not a valid HTTP"),
            "%s", err);
  cr_assert_eq(load("tracing = { headers = { b = \"x\ny\"; }; };", NULL, &c),
               -1);
  cr_assert(strstr(err, "tracing.headers: 'b'"), "%s", err);
}

Test(otelcfg, enabled_false_in_the_file_wins_over_an_endpoint_variable) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", NULL};
  cr_assert_eq(load("tracing = { enabled = false; };", env, &c), 0, "%s",
               err);
  cr_assert_eq(c.enabled, 0);
}

Test(otelcfg, an_endpoint_variable_turns_tracing_on_without_a_group) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318", NULL};
  cr_assert_eq(load(NULL, env, &c), 0, "%s", err);
  cr_assert_eq(c.enabled, 1);
  cr_assert_str_eq(c.endpoint, "http://c:4318/v1/traces");
}

Test(otelcfg, the_base_endpoint_gets_one_slash_before_v1_traces) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/base/",
                       NULL};
  cr_assert_eq(load(NULL, env, &c), 0, "%s", err);
  cr_assert_str_eq(c.endpoint, "http://c:4318/base/v1/traces");
}

Test(otelcfg, the_traces_endpoint_variable_wins_and_is_used_as_is) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT",
                       "http://generic:4318",
                       "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                       "http://traces:4318/x",
                       NULL};
  cr_assert_eq(load("tracing = { traces_endpoint = \"http://file/t\"; };", env,
                    &c),
               0, "%s", err);
  cr_assert_str_eq(c.endpoint, "http://traces:4318/x");
}

Test(otelcfg, the_environment_overrides_the_file_endpoint) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:1", NULL};
  cr_assert_eq(load("tracing = { traces_endpoint = \"http://file/t\"; };", env,
                    &c),
               0, "%s", err);
  cr_assert_str_eq(c.endpoint, "http://env:1/v1/traces");
}

Test(otelcfg, sdk_disabled_turns_everything_off_whatever_else_is_set) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318",
                       "OTEL_SDK_DISABLED", "TRUE", NULL};
  cr_assert_eq(load("tracing = {};", env, &c), 0, "%s", err);
  cr_assert_eq(c.enabled, 0);
  const char *no[] = {"OTEL_SDK_DISABLED", "false", NULL};
  cr_assert_eq(load("tracing = {};", no, &c), 0, "%s", err);
  cr_assert_eq(c.enabled, 1);
  const char *bad[] = {"OTEL_SDK_DISABLED", "yes", NULL};
  cr_assert_eq(load("tracing = {};", bad, &c), -1);
  cr_assert(strstr(err, "OTEL_SDK_DISABLED: must be true or false"), "%s",
            err);
}

Test(otelcfg, service_name_precedence_env_name_then_env_attributes_then_file) {
  wr_otel_cfg c;
  const char *file = "tracing = { service_name = \"file\"; };";
  cr_assert_eq(load(file, NULL, &c), 0);
  cr_assert_str_eq(c.service_name, "file");
  const char *attrs[] = {"OTEL_RESOURCE_ATTRIBUTES", "service.name=attrs",
                         NULL};
  cr_assert_eq(load(file, attrs, &c), 0);
  cr_assert_str_eq(c.service_name, "attrs");
  cr_assert_null(res(&c, "service.name"));
  const char *both[] = {"OTEL_RESOURCE_ATTRIBUTES", "service.name=attrs",
                        "OTEL_SERVICE_NAME", "name", NULL};
  cr_assert_eq(load(file, both, &c), 0);
  cr_assert_str_eq(c.service_name, "name");
}

Test(otelcfg, resource_attributes_are_trimmed_and_percent_decoded) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_RESOURCE_ATTRIBUTES",
                       " team = a%20b%2Cc%3D ,k8s.pod.name=p-1,,"
                       "telemetry.sdk.name=mine",
                       NULL};
  cr_assert_eq(load("tracing = { resource_attributes = { team = \"file\"; };"
                    " };",
                    env, &c),
               0, "%s", err);
  cr_assert_str_eq(res(&c, "team"), "a b,c=");
  cr_assert_str_eq(res(&c, "k8s.pod.name"), "p-1");
  cr_assert_str_eq(res(&c, "telemetry.sdk.name"), "mine");
}

Test(otelcfg, a_bad_percent_escape_or_a_missing_equals_names_the_variable) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_RESOURCE_ATTRIBUTES", "a=%zz", NULL};
  cr_assert_eq(load(NULL, env, &c), -1);
  cr_assert(strstr(err, "OTEL_RESOURCE_ATTRIBUTES: value of 'a'"), "%s", err);
  const char *trunc[] = {"OTEL_RESOURCE_ATTRIBUTES", "a=%4", NULL};
  cr_assert_eq(load(NULL, trunc, &c), -1);
  const char *noeq[] = {"OTEL_EXPORTER_OTLP_HEADERS", "justakey", NULL};
  cr_assert_eq(load(NULL, noeq, &c), -1);
  cr_assert(strstr(err, "OTEL_EXPORTER_OTLP_HEADERS: 'justakey' is not "
                        "key=value"),
            "%s", err);
}

Test(otelcfg, trace_headers_win_over_generic_ones_key_by_key) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_HEADERS",
                       "a=generic,b=generic%20b",
                       "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                       "a=traces",
                       NULL};
  cr_assert_eq(
      load("tracing = { headers = { a = \"file\"; c = \"file\"; }; };", env,
           &c),
      0, "%s", err);
  cr_assert_str_eq(hdr(&c, "a"), "traces");
  cr_assert_str_eq(hdr(&c, "b"), "generic b");
  cr_assert_str_eq(hdr(&c, "c"), "file");
  cr_assert_eq(c.n_headers, 3);
}

Test(otelcfg, sampler_variables_override_the_file) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_TRACES_SAMPLER", "parentbased_traceidratio",
                       "OTEL_TRACES_SAMPLER_ARG", "0.1", NULL};
  cr_assert_eq(load("tracing = { sampler = \"always_off\"; sampler_arg = 0.5;"
                    " };",
                    env, &c),
               0, "%s", err);
  cr_assert_eq(c.sampler, WR_SAMPLER_PARENT_RATIO);
  cr_assert_float_eq(c.ratio, 0.1, 1e-12);
  const char *names[] = {"always_on", "always_off", "traceidratio",
                         "parentbased_always_on", "parentbased_always_off",
                         "parentbased_traceidratio"};
  const wr_sampler want[] = {WR_SAMPLER_ALWAYS_ON,
                             WR_SAMPLER_ALWAYS_OFF,
                             WR_SAMPLER_RATIO,
                             WR_SAMPLER_PARENT_ALWAYS_ON,
                             WR_SAMPLER_PARENT_ALWAYS_OFF,
                             WR_SAMPLER_PARENT_RATIO};
  for (int i = 0; i < 6; i++) {
    const char *e[] = {"OTEL_TRACES_SAMPLER", names[i], NULL};
    cr_assert_eq(load(NULL, e, &c), 0, "%s", err);
    cr_assert_eq(c.sampler, want[i], "%s", names[i]);
  }
}

Test(otelcfg, bad_sampler_variables_are_errors_naming_them) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_TRACES_SAMPLER", "jaeger_remote",
                       "OTEL_TRACES_SAMPLER_ARG", "2", NULL};
  cr_assert_eq(load(NULL, env, &c), -1);
  cr_assert(strstr(err, "OTEL_TRACES_SAMPLER: must be"), "%s", err);
  cr_assert(strstr(err, "OTEL_TRACES_SAMPLER_ARG: must be a number 0..1"),
            "%s", err);
}

Test(otelcfg, timeouts_and_batch_variables_are_milliseconds_and_counts) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_TIMEOUT",
                       "2500",
                       "OTEL_BSP_SCHEDULE_DELAY",
                       "200",
                       "OTEL_BSP_MAX_QUEUE_SIZE",
                       "64",
                       "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                       "16",
                       NULL};
  cr_assert_eq(load("tracing = { timeout = 9; delay = 3; max_queue = 5000; "
                    "max_batch = 1000; };",
                    env, &c),
               0, "%s", err);
  cr_assert_float_eq(c.timeout, 2.5, 1e-12);
  cr_assert_float_eq(c.delay, 0.2, 1e-12);
  cr_assert_eq(c.max_queue, 64);
  cr_assert_eq(c.max_batch, 16);
  const char *both[] = {"OTEL_EXPORTER_OTLP_TIMEOUT", "2500",
                        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700", NULL};
  cr_assert_eq(load(NULL, both, &c), 0, "%s", err);
  cr_assert_float_eq(c.timeout, 0.7, 1e-12);
}

Test(otelcfg, bad_numbers_in_the_environment_name_their_variable) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_TIMEOUT",
                       "10s",
                       "OTEL_BSP_SCHEDULE_DELAY",
                       "-5",
                       "OTEL_BSP_MAX_QUEUE_SIZE",
                       "lots",
                       "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                       "0",
                       "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                       "collector:4318",
                       NULL};
  cr_assert_eq(load(NULL, env, &c), -1);
  const char *want[] = {"OTEL_EXPORTER_OTLP_TIMEOUT: must be an integer",
                        "OTEL_BSP_SCHEDULE_DELAY: must be an integer",
                        "OTEL_BSP_MAX_QUEUE_SIZE: must be an integer",
                        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: must be an integer",
                        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: must be an http"};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    cr_assert(strstr(err, want[i]), "missing '%s' in:\n%s", want[i], err);
}

Test(otelcfg, a_batch_larger_than_the_queue_is_refused) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096", NULL};
  cr_assert_eq(load(NULL, env, &c), -1);
  cr_assert(strstr(err, "max_batch: 4096 is more than max_queue 2048"), "%s",
            err);
}

Test(otelcfg, empty_variables_count_as_unset) {
  wr_otel_cfg c;
  const char *env[] = {"OTEL_EXPORTER_OTLP_ENDPOINT", "", "OTEL_SDK_DISABLED",
                       "", "OTEL_SERVICE_NAME", "", NULL};
  cr_assert_eq(load(NULL, env, &c), 0, "%s", err);
  cr_assert_eq(c.enabled, 0);
  cr_assert_str_eq(c.service_name, "warren");
}

Test(otelcfg, too_many_attributes_is_an_error_not_a_silent_cut) {
  wr_otel_cfg c;
  char list[4096] = "";
  for (int i = 0; i < WR_OTEL_MAX_RESOURCE + 1; i++) {
    char one[32];
    snprintf(one, sizeof one, "%sk%d=v", i ? "," : "", i);
    strcat(list, one);
  }
  const char *env[] = {"OTEL_RESOURCE_ATTRIBUTES", list, NULL};
  cr_assert_eq(load(NULL, env, &c), -1);
  cr_assert(strstr(err, "OTEL_RESOURCE_ATTRIBUTES: more than 32 entries"),
            "%s", err);
}
