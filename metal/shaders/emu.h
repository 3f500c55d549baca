// emu.h: a small emulator of the Metal compute grid, used by the Linux
// tests to run whole kernels (see emu.c).
#ifndef MQ_EMU_H
#define MQ_EMU_H

#include "mq_compat.h"

#ifdef __METAL_VERSION__
#error "emu.h is for the C side only"
#endif

// The thread-position attributes a kernel entry may ask for.
typedef struct {
  uint3 tgid;   // threadgroup_position_in_grid
  uint3 tid3;   // thread_position_in_threadgroup
  uint3 tptg;   // threads_per_threadgroup
  uint3 gid;    // thread_position_in_grid
  uint tidx;    // thread_index_in_threadgroup
  uint lane;    // thread_index_in_simdgroup
  uint sg;      // simdgroup_index_in_threadgroup
} emu_ids;

typedef void (*emu_entry)(void *args, const emu_ids *ids, void *tgmem);

// Scheduling orders of the threads of a threadgroup between barriers.
#define EMU_ORDER_FORWARD 0
#define EMU_ORDER_REVERSE 1
#define EMU_ORDER_SHUFFLE 2

// emu_launch runs entry over a grid of gx×gy×gz threadgroups of tx×ty×tz
// threads with tg_bytes of threadgroup memory (filled with NaN bytes at the
// start of each threadgroup, as uninitialised memory). It returns 0, or -1
// with a message in err (barrier divergence, bad launch).
int emu_launch(emu_entry entry, void *args, uint gx, uint gy, uint gz, uint tx, uint ty, uint tz,
               unsigned long tg_bytes, int order, char *err, int errlen);

#endif
