/* Which reply_to names a result may go to (replyto.h): RabbitMQ 3.10
 * closes the publisher's connection on a direct reply-to name it cannot
 * decode, so only names of the shape the broker makes pass. */
#include <criterion/criterion.h>
#include <string.h>

#include "replyto.h"

static int ok(const char *s) {
  return wr_replyto_ok(s, strlen(s));
}

/* Names RabbitMQ 3.10.8 gave here (NEW_PID_EXT, node "reply@<hash>"). */
#define REAL1                                                          \
  "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyMzMzODQ2OAAAAsMAAAAAawdbuQ==" \
  ".pXJ2OxGmLn3vtW1kLwLGWg=="
#define REAL2                                                          \
  "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyMzMzODQ2OAAAAt4AAAAAawdbuQ==" \
  ".mtNN9250SmzdmUOVgH8bAQ=="

Test(replyto, names_the_broker_gives_and_queue_names_pass) {
  cr_assert(ok(REAL1));
  cr_assert(ok(REAL2));
  cr_assert(ok("replies"));
  cr_assert(ok("amq.rabbitmq.reply-tox"), "another queue name");
  cr_assert(ok("amq.gen-abc"));
  cr_assert_not(ok(""));
  cr_assert(wr_replyto_is_direct(REAL1, strlen(REAL1)));
  cr_assert_not(wr_replyto_is_direct("replies", 7));
}

/* Breaks when a name the broker cannot decode would be published to. */
Test(replyto, made_up_direct_names_are_refused) {
  static const char *const bad[] = {
      "amq.rabbitmq.reply-to",
      "amq.rabbitmq.reply-to.",
      "amq.rabbitmq.reply-to.garbage",
      "amq.rabbitmq.reply-to.garbage.key",
      /* a valid term that is a list, not a pid (3.10 closed the
       * connection on it) */
      "amq.rabbitmq.reply-to.g2wCZAAPcmFiYml0QGxvY2FsaG9zdAAAA3wAAAAAAAAA"
      "AQ==.AAAAAAAAAAAAAAAAAAAAAA==",
      /* the real pid cut short by one byte, and one byte too many */
      "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyMzMzODQ2OAAAAsMAAAAAawdb"
      ".pXJ2OxGmLn3vtW1kLwLGWg==",
      "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyMzMzODQ2OAAAAsMAAAAAawdbuQA="
      ".pXJ2OxGmLn3vtW1kLwLGWg==",
      /* a second dot, an empty key, a key with a bad character */
      REAL1 ".x",
      "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyMzMzODQ2OAAAAsMAAAAAawdbuQ==.",
      "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyMzMzODQ2OAAAAsMAAAAAawdbuQ=="
      ".pXJ2OxGmLn3v*W1kLwLGWg==",
      /* padding in the middle, URL-safe characters */
      "amq.rabbitmq.reply-to.g1h2AA5y=XBseUAyMzMzODQ2OAAAAsMAAAAAawdbuQ=="
      ".k",
      "amq.rabbitmq.reply-to.g1h2AA5y_XBseUAyMzMzODQ2OAAAAsMAAAAAawdbuQ=="
      ".k",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_assert_not(ok(bad[i]), "taken: %s", bad[i]);
  /* A NUL inside the name. */
  char withnul[] = REAL1;
  withnul[30] = '\0';
  cr_assert_not(wr_replyto_ok(withnul, sizeof withnul - 1));
}
