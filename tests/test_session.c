/* The broker session's choice of node (framework/session.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "session.h"

/* Every node of a cluster of n is tried once in n attempts. */
static void every_node_tried(size_t n) {
  static wr_conn_node nodes[WR_SESSION_MAX_NODES];
  for (size_t i = 0; i < n; i++) nodes[i] = (wr_conn_node){"h", (int)i + 1};
  wr_conn_params p = {.host = "h", .port = 1, .nodes = nodes, .n_nodes = n};
  static const wr_session_events ev = {0};
  wr_session s;
  wr_session_init(&s, &p, 1, 1, 2, NULL, &ev, NULL);
  int seen[WR_SESSION_MAX_NODES] = {0};
  for (size_t k = 0; k < n; k++) {
    s.node = k;
    size_t i = wr_session_node_index(&s);
    cr_assert_lt(i, n);
    seen[i]++;
  }
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(seen[i], 1, "node %zu of %zu tried %d times in %zu attempts",
                 i, n, seen[i], n);
}

Test(session, every_node_of_a_cluster_is_tried_once_per_round) {
  every_node_tried(1);
  every_node_tried(3);
  every_node_tried(63);
}

Test(session, the_documented_maximum_of_64_nodes_are_all_tried) {
  every_node_tried(WR_SESSION_MAX_NODES);
}
