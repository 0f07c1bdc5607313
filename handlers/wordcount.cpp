/*
 * wordcount: a handler written in C++. Counts the words of each job's
 * body and logs the count and the most frequent word; an empty body is
 * rejected (nothing to count). Shows what a C++ plugin needs: the same
 * header, WARREN_HANDLER_DEFINE at namespace scope (it gives the entry
 * symbol C linkage), and no exception ever crossing into Warren.
 * Settings: min_length (int, optional): shorter words are not counted.
 */
#include <cctype>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>

#include <warren/handler.h>

namespace {

struct counter {
  const warren_api *api = nullptr;
  size_t min_length = 1;
};

int wc_init(const warren_api *api, const warren_settings *settings,
            void **state) {
  auto *c = new (std::nothrow) counter;
  if (!c) return WARREN_NOMEM;
  c->api = api;
  warren_value v;
  if (api->setting_get(settings, "min_length", &v) == WARREN_OK &&
      v.type == WARREN_VALUE_INT && v.i > 0)
    c->min_length = static_cast<size_t>(v.i);
  *state = c;
  return WARREN_OK;
}

warren_result wc_handle(void *state, const warren_message *m) {
  auto *c = static_cast<counter *>(state);
  if (m->body_len == 0) {
    c->api->set_error(m, "empty body: nothing to count");
    return WARREN_REJECT;
  }
  // An exception must not unwind into Warren's C frames: a job that
  // throws is retried with the reason, like any failure.
  try {
    std::string_view body(static_cast<const char *>(m->body), m->body_len);
    std::unordered_map<std::string, size_t> seen;
    size_t words = 0, i = 0;
    while (i < body.size()) {
      while (i < body.size() &&
             std::isspace(static_cast<unsigned char>(body[i])))
        i++;
      size_t start = i;
      while (i < body.size() &&
             !std::isspace(static_cast<unsigned char>(body[i])))
        i++;
      if (i - start >= c->min_length) {
        words++;
        seen[std::string(body.substr(start, i - start))]++;
      }
    }
    std::string top;
    size_t top_n = 0;
    for (const auto &[word, n] : seen)
      if (n > top_n || (n == top_n && word < top)) top = word, top_n = n;
    c->api->log(WARREN_LOG_INFO, "wordcount: job %s: %zu words, top '%s' x%zu",
                m->message_id[0] ? m->message_id : "-", words, top.c_str(),
                top_n);
    return WARREN_ACK;
  } catch (const std::exception &e) {
    c->api->set_error(m, "%s", e.what());
    return WARREN_RETRY;
  }
}

void wc_shutdown(void *state) {
  delete static_cast<counter *>(state);
}

}  // namespace

WARREN_HANDLER_DEFINE("wordcount", wc_init, wc_handle, wc_shutdown);
