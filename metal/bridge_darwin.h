// bridge_darwin.h: the C interface of the Objective-C Metal bridge
// (bridge_darwin.m). Plain C, so that cgo can read it on any host.
#ifndef MARLIN_METAL_BRIDGE_H
#define MARLIN_METAL_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct mq_ctx mq_ctx;

// Argument kinds.
enum {
  MQ_ARG_IN = 0,    // read by the kernel
  MQ_ARG_OUT = 1,   // written (and possibly read) by the kernel: copied back
  MQ_ARG_BYTES = 2, // small constant block, passed with setBytes
};

typedef struct {
  int kind;
  void *ptr;
  size_t len;
} mq_arg;

// mq_open creates the default device, a command queue and the library
// compiled from src (fast math off). NULL and a message in err on failure.
mq_ctx *mq_open(const char *src, char *err, size_t errlen);

// mq_close releases everything mq_open created.
void mq_close(mq_ctx *c);

// mq_device_name copies the device name into buf.
void mq_device_name(mq_ctx *c, char *buf, size_t len);

// mq_dispatch runs kernel over groups[0..2] threadgroups of threads[0..2]
// threads with args bound to buffer indices 0..nargs-1, waits for it, and
// copies MQ_ARG_OUT arguments back (unless they were mapped without a
// copy). 0, or -1 with a message in err.
int mq_dispatch(mq_ctx *c, const char *kernel, const mq_arg *args, int nargs,
                const uint32_t groups[3], const uint32_t threads[3], char *err, size_t errlen);

#endif
