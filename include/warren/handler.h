/*
 * Warren handler plugin ABI.
 *
 * A handler is a shared object that exports exactly one symbol,
 * `warren_handler_entry`, a const struct warren_handler (see WARREN_HANDLER_DEFINE).
 * The worker reads the struct without running plugin code, checks the ABI
 * major version and the struct size, and later calls the callbacks inside a
 * supervised worker process. A plugin links nothing from Warren: everything
 * it may call reaches it through the const struct warren_api passed to init.
 *
 * Compatibility rules (ABI major 1):
 *  - structs that cross the ABI start with a size or version field; new
 *    fields are only ever appended and read only when the size says they
 *    exist; reserved fields must be 0.
 *  - a plugin built against an older minor version loads in a newer worker;
 *    a different major version is refused at start.
 *
 * Threading: each worker process runs one job at a time on one thread, so a
 * handler's state needs no locking unless the handler starts threads itself.
 * With `isolation = false` in the config the same callbacks run inside the
 * supervisor process instead (one job at a time, no crash isolation).
 */
#ifndef WARREN_HANDLER_H
#define WARREN_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WARREN_ABI_MAJOR 1
#define WARREN_ABI_MINOR 0
#define WARREN_HANDLER_SYMBOL "warren_handler_entry"
#define WARREN_ABI_VERSION ((uint32_t)((WARREN_ABI_MAJOR << 16) | WARREN_ABI_MINOR))

/** What a handler says about a job. */
typedef enum warren_result {
  WARREN_ACK = 0,    /**< done: the job is acknowledged and removed */
  WARREN_RETRY = 1,  /**< failed, may succeed later: retried by policy */
  WARREN_REJECT = 2, /**< can never succeed: dead-lettered */
} warren_result;

/** Log levels for warren_api.log. */
typedef enum warren_log_level {
  WARREN_LOG_ERROR = 0,
  WARREN_LOG_WARN = 1,
  WARREN_LOG_INFO = 2,
  WARREN_LOG_DEBUG = 3,
} warren_log_level;

/** Type of a header or setting value. */
typedef enum warren_value_type {
  WARREN_VALUE_NONE = 0,   /**< absent, or void in AMQP */
  WARREN_VALUE_STRING = 1, /**< str/len; also AMQP byte arrays */
  WARREN_VALUE_INT = 2,    /**< i; every AMQP integer width */
  WARREN_VALUE_DOUBLE = 3, /**< d; AMQP float and double */
  WARREN_VALUE_BOOL = 4,   /**< i is 0 or 1 */
  WARREN_VALUE_OTHER = 5,  /**< nested table, array, decimal: not decoded */
} warren_value_type;

/**
 * A header or setting value. Strings point into memory owned by Warren,
 * valid as long as the object they came from (the message until handle()
 * returns; settings until shutdown() returns). They are NUL-terminated for
 * convenience, but may contain NUL bytes: use len.
 */
typedef struct warren_value {
  warren_value_type type;
  const char *str;
  size_t len;
  int64_t i;
  double d;
} warren_value;

/** Opaque: the headers table of one message. */
typedef struct warren_headers warren_headers;
/** Opaque: the `settings` group of this handler in the config file. */
typedef struct warren_settings warren_settings;

/**
 * One job as the handler sees it. Owned by Warren; every pointer is valid
 * until handle() returns, and must not be freed or written. Strings are
 * NUL-terminated and "" when the property is absent.
 */
typedef struct warren_message {
  uint32_t size;          /**< sizeof the struct as the worker built it */
  const void *body;       /**< message body, body_len bytes */
  size_t body_len;
  const char *exchange;   /**< exchange it was published to ("" = default) */
  const char *routing_key;
  const char *message_id;
  const char *correlation_id;
  const char *content_type;
  const warren_headers *headers; /**< read with warren_api.header_* */
  uint32_t attempt;       /**< 1 on first delivery; counts retries and crashes */
  uint32_t redelivered;   /**< 1 if the broker flagged it redelivered */
  uint64_t delivery_tag;  /**< broker's tag, for logs only */
} warren_message;

/**
 * The host API, handed to init(). Valid, unchanged, until shutdown()
 * returns; keep the pointer. Functions may be called only from the thread
 * that called init/handle.
 */
typedef struct warren_api {
  uint32_t size;        /**< sizeof the struct as the worker built it */
  uint32_t abi_version; /**< WARREN_ABI_VERSION of the worker */

  /** printf-style log line, tagged with the handler's name and pid. */
  void (*log)(warren_log_level level, const char *fmt, ...)
      __attribute__((format(printf, 2, 3)));

  /**
   * Look up header `name` (exact, case-sensitive). Returns 0 and fills
   * *out, or WARREN_NOT_FOUND (-5) with out->type = WARREN_VALUE_NONE.
   */
  int (*header_get)(const warren_headers *h, const char *name,
                    warren_value *out);
  /** Number of headers. */
  size_t (*header_count)(const warren_headers *h);
  /** Header at index < header_count(): fills *name (NUL-terminated) and *out. */
  int (*header_at)(const warren_headers *h, size_t index, const char **name,
                   warren_value *out);

  /**
   * Look up a setting by libconfig path ("smtp.host") in this handler's
   * settings group. Returns 0, WARREN_NOT_FOUND or WARREN_WRONG_TYPE
   * (-6; a group or list was found).
   */
  int (*setting_get)(const warren_settings *s, const char *path,
                     warren_value *out);

  /**
   * Attach an error text to the job being handled, shown in logs and, for
   * a job that is dead-lettered, in its headers. printf-style; truncated at
   * 1 KiB. Only valid inside handle(); the last call wins.
   */
  void (*set_error)(const warren_message *msg, const char *fmt, ...)
      __attribute__((format(printf, 2, 3)));
} warren_api;

/**
 * The one symbol a plugin exports. All callbacks run in a worker process.
 */
typedef struct warren_handler {
  uint32_t abi_version; /**< WARREN_ABI_VERSION the plugin was built with */
  uint32_t size;        /**< sizeof(struct warren_handler) when built */
  const char *name;     /**< short name for logs; may be NULL */

  /**
   * Optional. Called once per worker process before any job. Store private
   * state in *state (NULL by default). Return 0, or non-zero to refuse to
   * start (the worker logs it and the handler is not run).
   */
  int (*init)(const warren_api *api, const warren_settings *settings,
              void **state);

  /** Required. Run one job. */
  warren_result (*handle)(void *state, const warren_message *msg);

  /** Optional. Called once when the worker process stops cleanly. */
  void (*shutdown)(void *state);

  uint64_t reserved; /**< must be 0 */
} warren_handler;

#if defined(__GNUC__)
#define WARREN_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define WARREN_PLUGIN_EXPORT
#endif

/**
 * Define the plugin's entry symbol:
 *   WARREN_HANDLER_DEFINE("resize", my_init, my_handle, my_shutdown);
 */
#define WARREN_HANDLER_DEFINE(name_, init_, handle_, shutdown_)         \
  WARREN_PLUGIN_EXPORT const warren_handler warren_handler_entry = {          \
      WARREN_ABI_VERSION, (uint32_t)sizeof(warren_handler), (name_),    \
      (init_), (handle_), (shutdown_), 0}

#ifdef __cplusplus
}
#endif
#endif /* WARREN_HANDLER_H */
