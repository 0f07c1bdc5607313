/*
 * Warren handler plugin ABI.
 *
 * A handler is a shared object that exports exactly one symbol,
 * `warren_handler_entry`, a const struct warren_handler (see
 * WARREN_HANDLER_DEFINE). The worker reads the struct before calling any
 * plugin function (dlopen does run the object's own constructors), checks the
 * ABI version and the struct, and later calls the callbacks inside a supervised
 * worker process. A plugin links nothing from Warren: everything it may call
 * reaches it through the const struct warren_api passed to init. This header is
 * all a plugin needs; it includes <warren/status.h> for the status codes the
 * API returns.
 *
 * Compatibility rules (ABI major 1; docs/plugin-abi.md has the whole ABI):
 *  - warren_handler, warren_api and warren_message carry their size; new
 *    members are only ever appended, each marked with the minor version
 *    that added it (@since), and read only when the size says they exist
 *    (WARREN_API_HAS, WARREN_MESSAGE_HAS); reserved fields must be 0.
 *  - a host fills every warren_api member its size covers; none is NULL.
 *  - warren_value never grows (see there).
 *  - a plugin that declares an older or equal minor loads in a newer
 *    worker; a newer minor or another major is refused at start.
 *
 * Threading: each worker process runs one job at a time on one thread, so a
 * handler's state needs no locking unless the handler starts threads itself.
 * With `isolation = false` in the config the same callbacks run inside the
 * supervisor process instead (one job at a time, no crash isolation).
 */
#ifndef WARREN_HANDLER_H
#define WARREN_HANDLER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* The status codes, without libwarren's functions, which a plugin cannot
 * call (it links nothing from Warren; warren_api.strerror describes a
 * code). Including <warren/status.h> itself, as libwarren's users do,
 * declares them. */
#define WARREN_STATUS_CODES_ONLY
#include <warren/status.h>
#undef WARREN_STATUS_CODES_ONLY

#ifdef __cplusplus
extern "C" {
#endif

#define WARREN_ABI_MAJOR 1
#define WARREN_ABI_MINOR 2
#define WARREN_HANDLER_SYMBOL "warren_handler_entry"
#define WARREN_ABI_VERSION \
  ((uint32_t)((WARREN_ABI_MAJOR << 16) | WARREN_ABI_MINOR))

/*
 * The minor version a plugin declares it needs: this header's, unless the
 * plugin defines it lower before including this file, to load in older
 * workers too. It must then test members added after that minor with
 * WARREN_API_HAS / WARREN_MESSAGE_HAS before using them.
 */
#ifndef WARREN_PLUGIN_ABI_MINOR
#define WARREN_PLUGIN_ABI_MINOR WARREN_ABI_MINOR
#endif
#if WARREN_PLUGIN_ABI_MINOR > WARREN_ABI_MINOR
#error "WARREN_PLUGIN_ABI_MINOR is newer than this warren/handler.h"
#endif

/* printf format checking where the compiler has it; nothing elsewhere. */
#if defined(__GNUC__) || defined(__clang__)
#define WARREN_PRINTF_FORMAT(fmt, first) \
  __attribute__((format(printf, fmt, first)))
#else
#define WARREN_PRINTF_FORMAT(fmt, first)
#endif

/**
 * Whether the size-prefixed struct `*p`, of type `type` as this header
 * defines it, has `member`: its `size` field (set by whoever built the
 * struct) covers the whole member. For structs built by another version
 * of Warren or of the plugin.
 */
#define WARREN_STRUCT_HAS(p, type, member) \
  ((size_t)(p)->size >=                    \
   offsetof(type, member) + sizeof(((const type *)0)->member))

/**
 * Whether the host API table `api` has `member`, e.g.
 * `if (WARREN_API_HAS(api, set_error)) ...`. Only needed for members added
 * after the minor the plugin declares (WARREN_PLUGIN_ABI_MINOR): the worker
 * refuses a plugin that declares a newer minor than its own.
 */
#define WARREN_API_HAS(api, member) WARREN_STRUCT_HAS(api, warren_api, member)

/** Whether the message `msg` has `member`; as WARREN_API_HAS. */
#define WARREN_MESSAGE_HAS(msg, member) \
  WARREN_STRUCT_HAS(msg, warren_message, member)

/**
 * What a handler says about a job. Any other value returned by handle() is
 * treated as WARREN_RETRY, with the error text "handler returned invalid
 * result N". @since 1.0
 */
typedef enum warren_result {
  WARREN_ACK = 0,    /**< done: the job is acknowledged and removed */
  WARREN_RETRY = 1,  /**< failed, may succeed later: retried by policy */
  WARREN_REJECT = 2, /**< can never succeed: dead-lettered */
} warren_result;

/** Log levels for warren_api.log. @since 1.0 */
typedef enum warren_log_level {
  WARREN_LOG_ERROR = 0,
  WARREN_LOG_WARN = 1,
  WARREN_LOG_INFO = 2,
  WARREN_LOG_DEBUG = 3,
} warren_log_level;

/**
 * Type of a header or setting value. @since 1.0 (all six). A plugin must
 * treat a type it does not know like WARREN_VALUE_OTHER.
 */
typedef enum warren_value_type {
  WARREN_VALUE_NONE = 0,   /**< absent, or void in AMQP */
  WARREN_VALUE_STRING = 1, /**< str/len; also AMQP byte arrays */
  WARREN_VALUE_INT = 2,    /**< i; every AMQP integer width and timestamps */
  WARREN_VALUE_DOUBLE = 3, /**< d; AMQP float and double */
  WARREN_VALUE_BOOL = 4,   /**< i is 0 or 1 */
  WARREN_VALUE_OTHER = 5,  /**< nested table, array, decimal: not decoded */
} warren_value_type;

/**
 * A header or setting value, filled by the host into memory the plugin
 * owns (usually a local variable). Only the field `type` names is set; the
 * others are 0. Strings point into memory owned by Warren, valid as long as
 * the object they came from (a header: until handle() returns; a setting:
 * until shutdown() returns). They are NUL-terminated for convenience, but
 * may contain NUL bytes: use len.
 *
 * This struct has no size field and never grows: the plugin allocates it
 * and the host fills it, so a larger host-side struct would write past the
 * plugin's. Its layout is frozen for ABI major 1. A value type added in a
 * later minor uses these same fields, and is only returned to plugins that
 * declare that minor (older ones get WARREN_VALUE_OTHER); anything needing
 * more fields comes as a new host function with its own size-prefixed
 * struct. Changing this one is ABI 2.
 */
typedef struct warren_value {
  warren_value_type type; /**< which field below is set. @since 1.0 */
  /** WARREN_VALUE_STRING: the bytes, a NUL after them. @since 1.0 */
  const char *str;
  size_t len; /**< WARREN_VALUE_STRING: bytes before that NUL. @since 1.0 */
  int64_t i;  /**< WARREN_VALUE_INT and _BOOL. @since 1.0 */
  double d;   /**< WARREN_VALUE_DOUBLE. @since 1.0 */
} warren_value;

/** Opaque: the headers table of one message. */
typedef struct warren_headers warren_headers;
/** Opaque: the `settings` group of this handler in the config file. */
typedef struct warren_settings warren_settings;

/**
 * One job as the handler sees it. Owned by Warren; the struct and every
 * pointer in it are valid until handle() returns, and must not be freed or
 * written. Strings are NUL-terminated and "" when the property is absent.
 * The body is not guaranteed to be NUL-terminated.
 */
struct warren_api;

typedef struct warren_message {
  /** sizeof the struct as the worker built it. @since 1.0 */
  uint32_t size;
  const void *body;           /**< message body, body_len bytes. @since 1.0 */
  size_t body_len;            /**< @since 1.0 */
  const char *exchange;       /**< "" = the default exchange. @since 1.0 */
  const char *routing_key;    /**< @since 1.0 */
  const char *message_id;     /**< @since 1.0 */
  const char *correlation_id; /**< @since 1.0 */
  const char *content_type;   /**< @since 1.0 */
  /** Read with warren_api.header_*. @since 1.0 */
  const warren_headers *headers;
  /** 1 on first delivery; counts retries and crashes. @since 1.0 */
  uint32_t attempt;
  uint32_t redelivered;  /**< 1 if the broker flagged it. @since 1.0 */
  uint64_t delivery_tag; /**< the broker's, for logs only. @since 1.0 */
  /**
   * The job's trace, when Warren traces jobs (docs/tracing.md): 32
   * lower-case hex digits, or "" when it does not. @since 1.1
   */
  const char *trace_id;
  /** The job's own span in that trace: 16 hex digits, or "". @since 1.1 */
  const char *span_id;
  /**
   * A W3C `traceparent` naming the job's span (trace_id, span_id and the
   * sampled flag), to pass on to what the handler calls (an HTTP request,
   * another queue) so that it continues the trace; "" when not traced.
   * Follow-up jobs sent with warren_api.publish carry it already.
   * @since 1.1
   */
  const char *traceparent;
  /**
   * The host API, as init() got it: for a handler without init(), or
   * code that has only the message. @since 1.1
   */
  const struct warren_api *api;
  /**
   * Worker deaths in a row while running this job before this attempt
   * (crashes count towards max_crashes, docs/retries.md). @since 1.1
   */
  uint32_t crashes;
  /**
   * WARREN_MESSAGE_HAS_* bits: which properties the message carries, to
   * tell an absent message id from an empty one (both read ""). @since 1.1
   */
  uint32_t present;
} warren_message;

/** warren_message.present bits. @since 1.1 */
#define WARREN_MESSAGE_HAS_MESSAGE_ID 0x1u
#define WARREN_MESSAGE_HAS_CORRELATION_ID 0x2u
#define WARREN_MESSAGE_HAS_CONTENT_TYPE 0x4u

/**
 * A named value: a span attribute, or a header of a follow-up job. The
 * struct is frozen like warren_value (it never grows). @since 1.1
 */
typedef struct warren_attribute {
  const char *key;    /**< NUL-terminated, not NULL. @since 1.1 */
  warren_value value; /**< STRING, INT, DOUBLE or BOOL. @since 1.1 */
} warren_attribute;

/**
 * A follow-up job for warren_api.publish. Everything is read during the
 * call only (copied). Strings are NUL-terminated; NULL means absent.
 * @since 1.1
 */
typedef struct warren_publish {
  uint32_t size;           /**< sizeof(warren_publish). @since 1.1 */
  const char *exchange;    /**< NULL or "": the default exchange. */
  const char *routing_key; /**< not NULL; at most 255 bytes. */
  const void *body;        /**< body_len bytes; may be NULL when 0. */
  size_t body_len;
  const char *content_type; /**< at most 255 bytes. */
  /** At most 255 bytes. NULL: "<this job's message id>/<n>" for the n-th
   * follow-up of this attempt (none when the job has no id), so that the
   * copies a retry sends again carry the same ids. */
  const char *message_id;
  const char *correlation_id;      /**< at most 255 bytes. */
  const warren_attribute *headers; /**< n_headers application headers */
  size_t n_headers;
  int transient; /**< 1: delivery_mode 1; default persistent. */
} warren_publish;

/**
 * The host API, handed to init(). The table and its functions stay valid,
 * unchanged, until shutdown() returns; keep the pointer. Functions may be
 * called only from the thread that calls init/handle/shutdown.
 */
typedef struct warren_api {
  /** sizeof the struct as the worker built it. @since 1.0 */
  uint32_t size;
  uint32_t abi_version; /**< WARREN_ABI_VERSION of the worker. @since 1.0 */

  /**
   * Write one printf-style log line to the worker's stderr, tagged with the
   * handler's name and the process id; dropped when `level` is above
   * WARREN_LOG_LEVEL. Lines are cut at 2 KiB. @since 1.0
   */
  void (*log)(warren_log_level level, const char *fmt, ...)
      WARREN_PRINTF_FORMAT(2, 3);

  /**
   * Look up header `name` (exact, case-sensitive; the first match).
   * @param h    the message's headers (msg->headers).
   * @param name NUL-terminated, not NULL; read during the call only.
   * @param out  filled; its strings live as long as the message.
   * @return WARREN_OK, or WARREN_NOT_FOUND with out->type =
   *         WARREN_VALUE_NONE. @since 1.0
   */
  int (*header_get)(const warren_headers *h, const char *name,
                    warren_value *out);
  /** Number of headers (the first 1024 of the message). @since 1.0 */
  size_t (*header_count)(const warren_headers *h);
  /**
   * Header at `index`: sets *name (NUL-terminated, lives as long as the
   * message) and *out; either may be NULL.
   * @return WARREN_OK, or WARREN_NOT_FOUND when index >= header_count().
   *         @since 1.0
   */
  int (*header_at)(const warren_headers *h, size_t index, const char **name,
                   warren_value *out);

  /**
   * Look up a setting by libconfig path ("smtp.host") in this handler's
   * settings group (`settings` from init; it may be NULL, when the handler
   * has none).
   * @return WARREN_OK; WARREN_NOT_FOUND (out->type = WARREN_VALUE_NONE);
   *         or WARREN_WRONG_TYPE with out->type = WARREN_VALUE_OTHER when
   *         a group, list or array was found. @since 1.0
   */
  int (*setting_get)(const warren_settings *s, const char *path,
                     warren_value *out);

  /**
   * Attach an error text to the job being handled, shown in logs and, for
   * a job that is dead-lettered, in its headers. printf-style; cut at 1023
   * bytes. Only inside handle() and for the message it was given; anything
   * else is ignored. The last call wins. @since 1.0
   */
  void (*set_error)(const warren_message *msg, const char *fmt, ...)
      WARREN_PRINTF_FORMAT(2, 3);

  /**
   * Set an attribute on the job's span (docs/tracing.md), replacing one of
   * the same key. Only inside handle() and for the message it was given.
   * key and value are copied. A job that is not traced, or not sampled,
   * ignores it and WARREN_OK is returned all the same. At most 64
   * attributes of up to 1 KiB each per job.
   * @return WARREN_OK; WARREN_INVALID (not the running job, NULL key, a
   *         value of another type); WARREN_TOO_LARGE (over a limit; the
   *         attribute is dropped). @since 1.1
   */
  int (*span_set_attribute)(const warren_message *msg, const char *key,
                            const warren_value *value);

  /**
   * Add a timestamped event named `name` to the job's span, with n
   * attributes (attrs may be NULL when n is 0); as span_set_attribute.
   * At most 32 events of 16 attributes each per job. @since 1.1
   */
  int (*span_add_event)(const warren_message *msg, const char *name,
                        const warren_attribute *attrs, size_t n);

  /**
   * Publish a follow-up job, continuing the trace (its `traceparent` names
   * this job's span; signed with Warren's key when signing is configured).
   * It is sent only if handle() returns WARREN_ACK, and this job is acked
   * only once the broker confirmed every follow-up. A follow-up the broker
   * refuses or cannot route fails this job, which is retried by its
   * policy: the follow-ups are sent again then (at-least-once; a consumer
   * sees a duplicate with the same message id). A crash of the worker
   * sends none. At most 256 follow-ups and 64 MiB per job.
   * @param msg the running job. @param pub read during the call only.
   * @return WARREN_OK (queued); WARREN_INVALID (not the running job, a
   *         bad field, a header this API does not send); WARREN_TOO_LARGE
   *         (over a limit). @since 1.1
   */
  int (*publish)(const warren_message *msg, const warren_publish *pub);

  /** log() with a va_list, to forward a plugin's own logger. @since 1.1 */
  void (*logv)(warren_log_level level, const char *fmt, va_list ap);

  /** set_error() with a va_list. @since 1.1 */
  void (*set_errorv)(const warren_message *msg, const char *fmt, va_list ap);

  /**
   * Describe a status code (what libwarren's warren_strerror says, which
   * a plugin cannot call). @return a static string, never NULL.
   * @since 1.1
   */
  const char *(*strerror)(int status);

  /**
   * Set the job's result, sent to the job's `reply_to` queue with its
   * `correlation_id` once the job is acked (docs/results.md). Only inside
   * handle() and for the message it was given; the last call wins. The
   * result is sent only if handle() returns WARREN_ACK, and the job is
   * acked only once the broker confirmed it (with any follow-ups); a job
   * without `reply_to` sends none (the call still checks and succeeds). A
   * job that is dead-lettered sends an error result instead; a retried
   * attempt sends nothing.
   * @param msg          the running job.
   * @param body         len bytes, copied; may be NULL when len is 0.
   * @param content_type NULL or at most 255 bytes, copied.
   * @return WARREN_OK; WARREN_INVALID (not the running job, a bad
   *         argument); WARREN_TOO_LARGE (len over the handler's
   *         max_result, or with the job's follow-ups over their 64 MiB;
   *         the result is not set, an earlier one stays). @since 1.2
   */
  int (*set_result)(const warren_message *msg, const void *body, size_t len,
                    const char *content_type);
} warren_api;

/**
 * The one symbol a plugin exports. All callbacks run in a worker process
 * (or in the supervisor with `isolation = false`), on one thread.
 */
typedef struct warren_handler {
  /** ABI the plugin needs, major << 16 | minor. @since 1.0 */
  uint32_t abi_version;
  /** sizeof(struct warren_handler) when built. @since 1.0 */
  uint32_t size;
  /** Short name; may be NULL. Not used by the worker, whose logs use the
   * handler's name in the config. @since 1.0 */
  const char *name;

  /**
   * Optional (NULL: nothing to set up). Called once per worker process
   * before any job; *state is NULL on entry, and what init leaves there is
   * passed to handle() and shutdown().
   * @param api      host functions; valid until shutdown() returns.
   * @param settings this handler's `settings` group, or NULL; valid until
   *                 shutdown() returns.
   * @return WARREN_OK to start; anything else refuses (the worker exits,
   *         and shutdown() is not called, so undo what init did first).
   *         @since 1.0
   */
  int (*init)(const warren_api *api, const warren_settings *settings,
              void **state);

  /** Required. Run one job; msg is valid until it returns. @since 1.0 */
  warren_result (*handle)(void *state, const warren_message *msg);

  /**
   * Optional. Called once when a worker process is stopped while idle
   * (with `isolation = false`: when warren stops); not after a crash, a
   * kill, a timeout or a failed init. @since 1.0
   */
  void (*shutdown)(void *state);

  uint64_t reserved; /**< must be 0. @since 1.0 */
} warren_handler;

#if defined(__GNUC__) || defined(__clang__)
#define WARREN_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define WARREN_PLUGIN_EXPORT
#endif

/* In C++ a namespace-scope const has internal linkage; the entry symbol
 * needs external C linkage to be found by name. */
#ifdef __cplusplus
#define WARREN_ENTRY_LINKAGE_ extern "C"
#else
#define WARREN_ENTRY_LINKAGE_
#endif

/**
 * Define the plugin's entry symbol; init_ and shutdown_ may be NULL:
 *   WARREN_HANDLER_DEFINE("resize", my_init, my_handle, my_shutdown);
 */
#define WARREN_HANDLER_DEFINE(name_, init_, handle_, shutdown_)           \
  WARREN_ENTRY_LINKAGE_ WARREN_PLUGIN_EXPORT const warren_handler         \
      warren_handler_entry = {                                            \
          (uint32_t)((WARREN_ABI_MAJOR << 16) | WARREN_PLUGIN_ABI_MINOR), \
          (uint32_t)sizeof(warren_handler),                               \
          (name_),                                                        \
          (init_),                                                        \
          (handle_),                                                      \
          (shutdown_),                                                    \
          0}

#ifdef __cplusplus
}
#endif
#endif /* WARREN_HANDLER_H */
