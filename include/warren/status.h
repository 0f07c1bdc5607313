/*
 * Warren status codes, shared by the worker, libwarren and plugins.
 *
 * 0 is success and every error is negative, grouped by area in blocks of 100.
 * Codes are only ever appended: a released value never changes meaning.
 * The enum, warren_strerror() and warren_status_name() are generated from
 * WARREN_STATUS_MAP so they cannot drift; tests/test_status.c checks every
 * code has a unique name and a message.
 *
 * The enum is header-only and plugins may use it (handler.h includes this
 * file). The two functions live in libwarren and in the worker binary; a
 * plugin links nothing from Warren, so a plugin that calls them is refused
 * at load with an "undefined symbol" error (docs/plugin-abi.md).
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

/*
 * X(NAME, value, message). Codes marked "reserved" are allocated but not
 * returned by this version of Warren; they keep their meaning for when
 * they are.
 */
#define WARREN_STATUS_MAP(X)                                                 \
  X(OK, 0, "success")                                                        \
  X(NOMEM, -1, "out of memory")                                              \
  X(INVALID, -2, "invalid argument")                                         \
  X(IO, -3, "input/output error")                                            \
  X(TOO_LARGE, -4, "value exceeds its hard maximum")                         \
  X(NOT_FOUND, -5, "not found")                                              \
  X(WRONG_TYPE, -6, "value has another type")                                \
  X(CONFIG_SYNTAX, -100, "configuration file has a syntax error")            \
  X(CONFIG_INVALID, -101, "configuration setting is invalid")                \
  X(CONFIG_READ, -102, "configuration file cannot be read")                  \
  X(PLUGIN_OPEN, -200, "handler plugin cannot be loaded")                    \
  X(PLUGIN_SYMBOL, -201,                                                     \
    "handler plugin lacks the warren_handler_entry symbol")                  \
  X(PLUGIN_ABI, -202, "handler plugin was built for another ABI version")    \
  X(PLUGIN_INVALID, -203, "handler plugin descriptor is invalid")            \
  X(PLUGIN_INIT, -204, "handler plugin init failed")                         \
  /* reserved: a handler name used twice is refused as CONFIG_INVALID */     \
  X(PLUGIN_DUPLICATE, -205, "handler plugin is loaded twice under one name") \
  X(BROKER_CONNECT, -300, "cannot connect to the broker")                    \
  X(BROKER_LOGIN, -301, "broker refused the login")                          \
  X(BROKER_CLOSED, -302, "broker closed the connection or channel")          \
  X(BROKER_PROTOCOL, -303, "unexpected reply from the broker")               \
  X(BROKER_NACK, -304, "broker refused a published message")                 \
  X(BROKER_TIMEOUT, -305, "broker did not answer in time")                   \
  X(BROKER_TLS, -306, "TLS set-up failed")                                   \
  /* reserved: a dead worker is reported by its exit status instead */       \
  X(WORKER_CRASHED, -400, "worker process died")                             \
  X(WORKER_SPAWN, -401, "cannot start worker process")                       \
  /* reserved: a worker that breaks the protocol is killed and restarted */  \
  X(WORKER_PROTOCOL, -402, "worker process sent a malformed frame")          \
  X(NO_REPLY, -500, "no result came back in time")

/** Every status code; see WARREN_STATUS_MAP for the messages. */
typedef enum warren_status {
#define WARREN_STATUS_ENUM_(name, value, msg) WARREN_##name = (value),
  WARREN_STATUS_MAP(WARREN_STATUS_ENUM_)
#undef WARREN_STATUS_ENUM_
} warren_status;

#ifdef __cplusplus
}
#endif
#endif /* WARREN_STATUS_H */

/* libwarren's functions, declared unless only the codes were asked for
 * (handler.h does: plugins link nothing from Warren). */
#if !defined(WARREN_STATUS_CODES_ONLY) && !defined(WARREN_STATUS_FUNCTIONS_)
#define WARREN_STATUS_FUNCTIONS_
#ifdef __cplusplus
extern "C" {
#endif
/**
 * Describe a status code.
 *
 * @param status any int; unknown values get "unknown status".
 * @return a static NUL-terminated string; never NULL, never freed.
 */
WARREN_EXPORT const char *warren_strerror(int status);

/**
 * Name a status code, for logs and tests: "WARREN_NOT_FOUND" for
 * WARREN_NOT_FOUND.
 *
 * @param status any int; unknown values get "unknown" (never a code's name).
 * @return a static NUL-terminated string; never NULL, never freed.
 */
WARREN_EXPORT const char *warren_status_name(int status);

#ifdef __cplusplus
}
#endif
#endif
