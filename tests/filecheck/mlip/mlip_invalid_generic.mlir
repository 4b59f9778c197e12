// RUN: mrvl-opt %s --verify-diagnostics --split-input-file | filecheck %s

// Verifier errors of hand-written mlip IR (generic form or custom form): "expected X, got
// Y" messages, never a crash in the custom printer.

"mlip.nop"() <{src = "f77", dst = "f16", queue = "compute", operandSegmentSizes = array<i32: 0, 0>, resultSegmentSizes = array<i32: 0, 0>}> : () -> ()
// CHECK: expected src in ['f32', 'f16', {{.*}}], got f77

// -----

%in = "mlip.buffer"() <{label = "in", size = 64 : i64, slots = 1 : i64, kind = "scratch", layer = 0 : i64}> : () -> !mlip.buffer
"mlip.pool"(%in, %in) <{func = "median", src = "f16", dst = "f16", operandSegmentSizes = array<i32: 1, 1, 0, 0>, resultSegmentSizes = array<i32: 0, 0>}> : (!mlip.buffer, !mlip.buffer) -> ()
// CHECK: expected func in ['max', 'avg'], got median

// -----

%in = "mlip.buffer"() <{label = "in", size = 64 : i64, slots = 1 : i64, kind = "scratch", layer = 0 : i64}> : () -> !mlip.buffer
"mlip.gemm"(%in, %in, %in) <{bias_slot = 0 : i64, src = "f16", dst = "f16", operandSegmentSizes = array<i32: 1, 1, 1, 0, 0, 0, 0>, resultSegmentSizes = array<i32: 0, 0>}> : (!mlip.buffer, !mlip.buffer, !mlip.buffer) -> ()
// CHECK: expected a buffer operand for bias_addr, got none

// -----

%in = "mlip.buffer"() <{label = "in", size = 64 : i64, slots = 1 : i64, kind = "scratch", layer = 0 : i64}> : () -> !mlip.buffer
"mlip.copy"(%in, %in) <{rows = -1 : i64, src = "f16", dst = "f16", operandSegmentSizes = array<i32: 1, 1, 0, 0>, resultSegmentSizes = array<i32: 0, 0>}> : (!mlip.buffer, !mlip.buffer) -> ()
// CHECK: expected rows in [0, 4294967295], got -1

// -----

%in = mlip.buffer "in", size = 64, slots = 2, kind = scratch, layer = 0, addrs = [0]
// CHECK: expected 2 addrs (one per slot), got 1

// -----

%in = mlip.buffer "in", size = 64, slots = 1, kind = scratch, layer = 0
%0 = mlip.dma_store dram_addr = @y[0], ocm_addr = %in[0, 0], src = f16, dst = f16, push_next
// CHECK: expected no pop_next / push_next on the dma_out queue (it has no next queue), got one

// -----

// Tokens of one channel are popped in the order they are pushed (the queues are FIFOs).
mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  mlip.tensor @x {region = "input", shape = array<i64: 64>, dtype = "f16"}
  %in = mlip.buffer "in", size = 64, slots = 2, kind = scratch, layer = 0
  mlip.section attributes {section = "main"} {
    %0 = mlip.dma_load dram_addr = @x[0], ocm_addr = %in[0, 0], src = f16, dst = f16, layer = 0, tile = 0, push_next
    %1 = mlip.dma_load dram_addr = @x[0], ocm_addr = %in[1, 0], src = f16, dst = f16, layer = 0, tile = 0, push_next
    mlip.copy in_addr = %in[1, 0], out_addr = %in[1, 0], src = f16, dst = f16, layer = 0, tile = 0, pop_prev = %1
    mlip.copy in_addr = %in[0, 0], out_addr = %in[0, 0], src = f16, dst = f16, layer = 0, tile = 0, pop_prev = %0
  }
}
// CHECK: expected mlip.copy pop_prev to take the oldest token that queue dma_in of tile 0 pushed to it, got another token

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  mlip.section attributes {section = "main"} {
    mlip.barrier id = 0, src = f16, dst = f16, tile = 3
  }
}
// CHECK: expected tile in [0, 1), got 3

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  %in = mlip.buffer "in", size = 64, slots = 1, kind = scratch, layer = 0
  mlip.layer @l attributes {kind = "copy", index = 0 : i64, macs = 0 : i64, split = "none", blocks = 1 : i64} {
    mlip.block attributes {tile = 0 : i64} {
      mlip.dma_load dram_addr = @nowhere[0], ocm_addr = %in[0, 0], src = f16, dst = f16, layer = 0
    }
  }
}
// CHECK: expected mlip.dma_load dram_addr to name an mlip.tensor, got @nowhere

// -----

// A well-formed op in generic form prints as its assembly line.
%in = "mlip.buffer"() <{label = "in", size = 64 : i64, slots = 1 : i64, kind = "scratch", layer = 0 : i64}> : () -> !mlip.buffer
"mlip.act"(%in, %in) <{in_slot = 0 : i64, in_offset = 8 : i64, out_slot = 0 : i64, out_offset = 0 : i64, act = "relu", src = "f16", dst = "f16", layer = 0 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0>, resultSegmentSizes = array<i32: 0, 0>}> : (!mlip.buffer, !mlip.buffer) -> ()
// CHECK: mlip.act in_addr = %in[0, 8], out_addr = %in[0, 0], act = relu, src = f16, dst = f16, layer = 0

// -----

mlip.model @m attributes {num_tiles = 2 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  %in = mlip.buffer "in", size = 64, slots = 1, kind = scratch, layer = 0
  mlip.tile_copy src_addr = %in[0, 0], dst_addr = %in[0, 0], dst_tile_mask = 1, dim0 = 1, dim1 = 1, dim2 = 1, dim3 = 32, src = f16, dst = f32
}
// CHECK: expected src = dst (a bit copy), got f16 and f32

// -----

mlip.model @m attributes {num_tiles = 2 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  %in = mlip.buffer "in", size = 64, slots = 1, kind = scratch, layer = 0
  mlip.section attributes {section = "main"} {
    mlip.tile_copy src_addr = %in[0, 0], dst_addr = %in[0, 0], dst_tile_mask = 4, dim0 = 1, dim1 = 1, dim2 = 1, dim3 = 32, src = f16, dst = f16, tile = 0
  }
}
// CHECK: expected dst_tile_mask below 4 (2 tiles), got 4
