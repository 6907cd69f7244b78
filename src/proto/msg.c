/*
 * msg.c -- the table of message types (name, direction, fields) generated
 * from DT_MSG_MAP in proto.h; docs/architecture.md lists the same table.
 */
#include "proto.h"

const dt_msg_info dt__msgs[DT_OP_COUNT] = {
    [DT_OP_NONE] = {DT_OP_NONE, "NONE", "-", "unused"},
#define X(name, dir, doc) [DT_OP_##name] = {DT_OP_##name, #name, dir, doc},
    DT_MSG_MAP(X)
#undef X
};

const char *dt__op_name(int op) {
  if (op <= 0 || op >= DT_OP_COUNT) return "UNKNOWN";
  return dt__msgs[op].name;
}
