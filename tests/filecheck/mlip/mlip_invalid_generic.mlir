// RUN: mrvl-opt %s --verify-diagnostics --split-input-file | filecheck %s

// Verifier errors of hand-written mlip IR: instruction ops in generic form with a malformed
// `fields` property (never a crash in the custom printer), and bad `mlip.tensor` records.

"mlip.nop"() <{fields = 3 : i64}> : () -> ()
// CHECK: expected a dictionary of instruction fields, got 3 : i64

// -----

"mlip.act"() <{fields = {"#header" = array<i64: 0, 0, 77, 0, 0, 0, 0, 0, 1>, "#fparams" = [1.0, 0.0, 0.0]}}> : () -> ()
// CHECK: expected a valid src dtype, got 77

// -----

"mlip.pool"() <{fields = {in_addr = "@x[1]", "#header" = array<i64: 9, 0, 1, 1, 0, 0, 0, 0, 1>, "#fparams" = [1.0, 0.0, 0.0]}}> : () -> ()
// CHECK: expected func in ['max', 'avg'], got 9

// -----

"mlip.act"() <{fields = {in_addr = "@x[", "#header" = array<i64: 0, 0, 1, 1, 0, 0, 0, 0, 1>, "#fparams" = [1.0, 0.0, 0.0]}}> : () -> ()
// CHECK: expected field 'in_addr' to be a number or an @ref, got "@x["

// -----

"mlip.act"() <{fields = {in_addr = "@x[1]", "#header" = array<i64: 0, 0, 1, 1, 0, 0, 0, 0, 1>, "#fparams" = [1.0, 0.0, 0.0]}}> : () -> ()
// CHECK: mlip.act in_addr = @x[1], src = f16, dst = f16, layer = 0

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = ["x"], outputs = []} {
  mlip.tensor @x {dtype = "f9", region = "input", shape = array<i64: 1, 4>}
}
// CHECK: expected dtype in ['f32', 'f16', 'i8', 'u8', 'i16', 'u16', 'i32', 'u32'], got "f9"

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = ["x"], outputs = []} {
  mlip.tensor @x {dtype = "f16", region = "nowhere", shape = array<i64: 1, 4>}
}
// CHECK: expected region in ['input', 'output', 'weights', 'scratch'], got "nowhere"

// -----

mlip.model @m attributes {num_tiles = 1 : i64, ocm_size = 1048576 : i64, page_size = 16384 : i64, quantize = "fp16", inputs = ["x"], outputs = []} {
  mlip.tensor @x {dtype = "f16", region = "weights", shape = array<i64: 1, 4>, data = "zz"}
}
// CHECK: expected data = "0x<hex bytes>"
