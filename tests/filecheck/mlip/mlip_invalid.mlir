// RUN: mrvl-opt %s --parsing-diagnostics --split-input-file | filecheck %s

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  mlip.stream attributes {section = "main", tile = 0 : i64, queue = "compute"} {
    mlip.conv in_addr = 0, m = 4, src = f16, dst = f16
  }
}
// CHECK: 'm' is not an operand of CONV

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  mlip.stream attributes {section = "main", tile = 0 : i64, queue = "compute"} {
    mlip.act in_addr = 0, act = swish, src = f16, dst = f16
  }
}
// CHECK: expected an activation name, got 'swish'

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  mlip.stream attributes {section = "main", tile = 0 : i64, queue = "compute"} {
    mlip.copy in_addr = 0, src = f8, dst = f16
  }
}
// CHECK: expected a dtype name, got 'f8'

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = [], outputs = []} {
  mlip.stream attributes {section = "main", tile = 0 : i64, queue = "compute"} {
    mlip.act in_addr = 0, act = relu, layer = @x[0], src = f16, dst = f16
  }
}
// CHECK: expected an integer for 'layer', got '@x+0'
