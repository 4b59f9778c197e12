// RUN: mrvl-opt %s --parsing-diagnostics --split-input-file | filecheck %s

// Parse errors of hand-written instruction lines: one clear message each.

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  %in = mlip.buffer "in", size = 64, slots = 1, kind = scratch, layer = 0
  mlip.conv in_addr = %in[0, 0], m = 4, src = f16, dst = f16
}
// CHECK: 'm' is not an operand of mlip.conv

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  %in = mlip.buffer "in", size = 64, slots = 1, kind = scratch, layer = 0
  mlip.act in_addr = %in[0, 0], out_addr = %in[0, 0], act = swish, src = f16, dst = f16
}
// CHECK: expected act in ['none', 'relu', {{.*}}], got 'swish'

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  %in = mlip.buffer "in", size = 64, slots = 1, kind = scratch, layer = 0
  mlip.copy in_addr = %in[0, 0], out_addr = %in[0, 0], src = f8, dst = f16
}
// CHECK: expected src in ['f32', 'f16', {{.*}}], got 'f8'

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  %in = mlip.buffer "in", size = 64, slots = 1, kind = scratch, layer = 0
  mlip.act in_addr = %in[0, 0], out_addr = %in[0, 0], act = relu, layer = 1.5, src = f16, dst = f16
}
// CHECK: expected an integer for 'layer', got 1.5

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  mlip.tensor @x {region = "input", shape = array<i64: 4>, dtype = "f16"}
  %in = mlip.buffer "in", size = 64, slots = 1, kind = scratch, layer = 0
  mlip.act in_addr = @x[0], out_addr = %in[0, 0], src = f16, dst = f16
}
// CHECK: Expected an operand

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  %t = mlip.buffer "t", size = 64, slots = 1, kind = scratch, layer = 0
  mlip.nop src = f16, dst = f16, queue = compute, pop_prev = %t
}
// CHECK: operand is used with type !mlip.token, but has been previously used or defined with type !mlip.buffer
