//go:build darwin && cgo

// bridge_darwin.m: the Objective-C side of the Metal backend (ARC).
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bridge_darwin.h"

struct mq_ctx {
  void *device;    // id<MTLDevice>, retained (CFBridgingRetain)
  void *queue;     // id<MTLCommandQueue>
  void *library;   // id<MTLLibrary>
  void *pipelines; // NSMutableDictionary<NSString*, id<MTLComputePipelineState>>
};

static void set_err(char *err, size_t n, NSString *msg) {
  if (err == NULL || n == 0) {
    return;
  }
  const char *s = msg != nil ? [msg UTF8String] : NULL;
  snprintf(err, n, "%s", s != NULL ? s : "unknown Metal error");
}

mq_ctx *mq_open(const char *src, char *err, size_t errlen) {
  @autoreleasepool {
    id<MTLDevice> dev = MTLCreateSystemDefaultDevice();
    if (dev == nil) {
      set_err(err, errlen, @"no Metal device");
      return NULL;
    }
    id<MTLCommandQueue> queue = [dev newCommandQueue];
    if (queue == nil) {
      set_err(err, errlen, @"cannot create a command queue");
      return NULL;
    }
    MTLCompileOptions *opts = [[MTLCompileOptions alloc] init];
    // Bit-exact dequantization needs IEEE float (denormal E8M0 scales,
    // NaN propagation): no fast math.
    opts.fastMathEnabled = NO;
    NSError *e = nil;
    NSString *source = [NSString stringWithUTF8String:src];
    id<MTLLibrary> lib = [dev newLibraryWithSource:source options:opts error:&e];
    if (lib == nil) {
      set_err(err, errlen,
              [NSString stringWithFormat:@"compiling the MSL library: %@",
                                         e != nil ? [e localizedDescription] : @"no details"]);
      return NULL;
    }
    mq_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
      set_err(err, errlen, @"out of memory");
      return NULL;
    }
    c->device = (void *)CFBridgingRetain(dev);
    c->queue = (void *)CFBridgingRetain(queue);
    c->library = (void *)CFBridgingRetain(lib);
    c->pipelines = (void *)CFBridgingRetain([NSMutableDictionary dictionary]);
    return c;
  }
}

void mq_close(mq_ctx *c) {
  if (c == NULL) {
    return;
  }
  CFBridgingRelease(c->pipelines);
  CFBridgingRelease(c->library);
  CFBridgingRelease(c->queue);
  CFBridgingRelease(c->device);
  free(c);
}

void mq_device_name(mq_ctx *c, char *buf, size_t len) {
  @autoreleasepool {
    id<MTLDevice> dev = (__bridge id<MTLDevice>)c->device;
    set_err(buf, len, [dev name]);
  }
}

// pipeline returns the cached compute pipeline of kernel name, creating it
// on first use.
static id<MTLComputePipelineState> pipeline(mq_ctx *c, const char *name, char *err, size_t errlen) {
  NSMutableDictionary *cache = (__bridge NSMutableDictionary *)c->pipelines;
  NSString *key = [NSString stringWithUTF8String:name];
  @synchronized(cache) {
    id<MTLComputePipelineState> ps = [cache objectForKey:key];
    if (ps != nil) {
      return ps;
    }
    id<MTLLibrary> lib = (__bridge id<MTLLibrary>)c->library;
    id<MTLFunction> fn = [lib newFunctionWithName:key];
    if (fn == nil) {
      set_err(err, errlen, [NSString stringWithFormat:@"no kernel function %@ in the library", key]);
      return nil;
    }
    NSError *e = nil;
    id<MTLDevice> dev = (__bridge id<MTLDevice>)c->device;
    ps = [dev newComputePipelineStateWithFunction:fn error:&e];
    if (ps == nil) {
      set_err(err, errlen,
              [NSString stringWithFormat:@"pipeline %@: %@", key,
                                         e != nil ? [e localizedDescription] : @"no details"]);
      return nil;
    }
    [cache setObject:ps forKey:key];
    return ps;
  }
}

int mq_dispatch(mq_ctx *c, const char *kernel, const mq_arg *args, int nargs,
                const uint32_t groups[3], const uint32_t threads[3], char *err, size_t errlen) {
  @autoreleasepool {
    id<MTLComputePipelineState> ps = pipeline(c, kernel, err, errlen);
    if (ps == nil) {
      return -1;
    }
    NSUInteger tpg = (NSUInteger)threads[0] * threads[1] * threads[2];
    if (tpg == 0 || tpg > [ps maxTotalThreadsPerThreadgroup]) {
      set_err(err, errlen,
              [NSString stringWithFormat:@"%s: %lu threads per threadgroup, the pipeline allows %lu",
                                         kernel, (unsigned long)tpg,
                                         (unsigned long)[ps maxTotalThreadsPerThreadgroup]]);
      return -1;
    }
    id<MTLDevice> dev = (__bridge id<MTLDevice>)c->device;
    id<MTLCommandQueue> queue = (__bridge id<MTLCommandQueue>)c->queue;
    id<MTLCommandBuffer> cb = [queue commandBuffer];
    id<MTLComputeCommandEncoder> enc = [cb computeCommandEncoder];
    [enc setComputePipelineState:ps];
    NSMutableArray *bufs = [NSMutableArray arrayWithCapacity:(NSUInteger)nargs];
    size_t page = (size_t)getpagesize();
    for (int i = 0; i < nargs; i++) {
      const mq_arg *a = &args[i];
      if (a->kind == MQ_ARG_BYTES) {
        [enc setBytes:a->ptr length:a->len atIndex:(NSUInteger)i];
        [bufs addObject:[NSNull null]];
        continue;
      }
      if (a->len == 0) {
        [enc endEncoding];
        set_err(err, errlen, [NSString stringWithFormat:@"%s: empty buffer %d", kernel, i]);
        return -1;
      }
      id<MTLBuffer> b = nil;
      BOOL nocopy = ((uintptr_t)a->ptr % page) == 0 && (a->len % page) == 0;
      if (nocopy) {
        // Page-aligned memory (mmapped weights, large allocations): the GPU
        // reads and writes it in place.
        b = [dev newBufferWithBytesNoCopy:a->ptr
                                   length:a->len
                                  options:MTLResourceStorageModeShared
                              deallocator:nil];
      }
      if (b == nil) {
        nocopy = NO;
        b = [dev newBufferWithBytes:a->ptr length:a->len options:MTLResourceStorageModeShared];
      }
      if (b == nil) {
        [enc endEncoding];
        set_err(err, errlen,
                [NSString stringWithFormat:@"%s: cannot allocate %zu bytes for buffer %d", kernel,
                                           a->len, i]);
        return -1;
      }
      [enc setBuffer:b offset:0 atIndex:(NSUInteger)i];
      [bufs addObject:(nocopy ? [NSNull null] : b)];
    }
    [enc dispatchThreadgroups:MTLSizeMake(groups[0], groups[1], groups[2])
        threadsPerThreadgroup:MTLSizeMake(threads[0], threads[1], threads[2])];
    [enc endEncoding];
    [cb commit];
    [cb waitUntilCompleted];
    if ([cb status] != MTLCommandBufferStatusCompleted) {
      NSError *e = [cb error];
      set_err(err, errlen,
              [NSString stringWithFormat:@"%s: command buffer failed: %@", kernel,
                                         e != nil ? [e localizedDescription] : @"no details"]);
      return -1;
    }
    for (int i = 0; i < nargs; i++) {
      if (args[i].kind != MQ_ARG_OUT) {
        continue;
      }
      id obj = [bufs objectAtIndex:(NSUInteger)i];
      if (obj == [NSNull null]) {
        continue; // mapped without a copy: already in place
      }
      id<MTLBuffer> b = (id<MTLBuffer>)obj;
      memcpy(args[i].ptr, [b contents], args[i].len);
    }
    return 0;
  }
}
