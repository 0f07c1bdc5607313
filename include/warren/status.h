/*
 * Warren status codes, shared by the worker, libwarren and plugins.
 *
 * 0 is success and every error is negative, grouped by area in blocks of 100.
 * Codes are only ever appended: a released value never changes meaning.
 * The enum and warren_strerror() are generated from WARREN_STATUS_MAP so the
 * two cannot drift; tests/test_status.c checks every code has a message.
 */
#ifndef WARREN_STATUS_H
#define WARREN_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WARREN_BUILDING) && defined(__GNUC__)
#define WARREN_EXPORT __attribute__((visibility("default")))
#else
#define WARREN_EXPORT
#endif

/* X(NAME, value, message) */
#define WARREN_STATUS_MAP(X)                                                  \
  X(OK, 0, "success")                                                         \
  X(NOMEM, -1, "out of memory")                                               \
  X(INVALID, -2, "invalid argument")                                          \
  X(IO, -3, "input/output error")                                             \
  X(TOO_LARGE, -4, "value exceeds its hard maximum")                          \
  X(NOT_FOUND, -5, "not found")                                               \
  X(WRONG_TYPE, -6, "value has another type")                                 \
  X(CONFIG_SYNTAX, -100, "configuration file has a syntax error")             \
  X(CONFIG_INVALID, -101, "configuration setting is invalid")                 \
  X(CONFIG_READ, -102, "configuration file cannot be read")                   \
  X(PLUGIN_OPEN, -200, "handler plugin cannot be loaded")                     \
  X(PLUGIN_SYMBOL, -201, "handler plugin lacks the warren_handler_entry symbol")    \
  X(PLUGIN_ABI, -202, "handler plugin was built for another ABI version")     \
  X(PLUGIN_INVALID, -203, "handler plugin descriptor is invalid")             \
  X(PLUGIN_INIT, -204, "handler plugin init failed")                          \
  X(PLUGIN_DUPLICATE, -205, "handler plugin is loaded twice under one name")  \
  X(BROKER_CONNECT, -300, "cannot connect to the broker")                     \
  X(BROKER_LOGIN, -301, "broker refused the login")                           \
  X(BROKER_CLOSED, -302, "broker closed the connection or channel")           \
  X(BROKER_PROTOCOL, -303, "unexpected reply from the broker")                \
  X(BROKER_NACK, -304, "broker refused a published message")                  \
  X(BROKER_TIMEOUT, -305, "broker did not answer in time")                    \
  X(BROKER_TLS, -306, "TLS set-up failed")                                    \
  X(WORKER_CRASHED, -400, "worker process died")                              \
  X(WORKER_SPAWN, -401, "cannot start worker process")                        \
  X(WORKER_PROTOCOL, -402, "worker process sent a malformed frame")

typedef enum warren_status {
#define WARREN_STATUS_ENUM_(name, value, msg) WARREN_##name = (value),
  WARREN_STATUS_MAP(WARREN_STATUS_ENUM_)
#undef WARREN_STATUS_ENUM_
} warren_status;

/**
 * Describe a status code.
 *
 * @param status any int; unknown values get "unknown status".
 * @return a static NUL-terminated string; never NULL, never freed.
 */
WARREN_EXPORT const char *warren_strerror(int status);

#ifdef __cplusplus
}
#endif
#endif /* WARREN_STATUS_H */
