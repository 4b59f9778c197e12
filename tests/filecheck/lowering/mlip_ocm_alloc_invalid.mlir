// RUN: not mrvl-opt %s -p mlip-ocm-alloc 2>&1 | filecheck %s

// A layer whose buffers need more than the OCM: a one-line error, not a traceback.

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 65536 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  %w = mlip.buffer "w", size = 40000, slots = 1, kind = weights, layer = 0
  %in = mlip.buffer "in", size = 16384, slots = 2, kind = scratch, layer = 0
  mlip.layer @big attributes {kind = "Conv2D", index = 0 : i64, macs = 0 : i64, split = "none", blocks = 0 : i64} {
  }
}

// CHECK: mrvl-opt: error: layer big needs 81920 bytes of OCM, more than the 65536 available
// CHECK-NOT: Traceback
