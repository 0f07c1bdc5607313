#include <warren/status.h>

const char *warren_strerror(int status) {
  switch (status) {
#define WARREN_STATUS_STR_(name, value, msg) \
  case value:                                \
    return msg;
    WARREN_STATUS_MAP(WARREN_STATUS_STR_)
#undef WARREN_STATUS_STR_
  }
  return "unknown status";
}

const char *warren_status_name(int status) {
  switch (status) {
#define WARREN_STATUS_NAME_(name, value, msg) \
  case value:                                 \
    return "WARREN_" #name;
    WARREN_STATUS_MAP(WARREN_STATUS_NAME_)
#undef WARREN_STATUS_NAME_
  }
  return "unknown";
}
