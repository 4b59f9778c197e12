// RUN: mrvl-opt %s -p mrvl-quantize --split-input-file | filecheck %s
// RUN: mrvl-opt %s -p 'mrvl-quantize{mode=int8 io_dtype=f32}' --split-input-file | filecheck %s --check-prefix=INT8

// fp16: the function is annotated, the layers are not (no scales).

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x2x2x3xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %b = graph.constant dense<2.500000e-01> : tensor<3xf32>
  %y = mrvl.conv2d %x, %w, %b {activation = "relu", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>, tensor<3xf32>) -> tensor<1x4x4x3xf32>
  %z = mrvl.maxpool2d %y {kernel_shape = array<i64: 2, 2>, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 2, 2>} : (tensor<1x4x4x3xf32>) -> tensor<1x2x2x3xf32>
  func.return %z : tensor<1x2x2x3xf32>
}

// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK-SAME:    mrvl.quantize = "fp16"
// CHECK-SAME:    mrvl.io_dtype = "f16"
// CHECK-NOT:     mrvl.scale

// The int8 step of every output is max |x| / 127 over the (seeded) calibration input; the
// max pool keeps its input's step.
// INT8-LABEL: func.func @tvmgen_mrvl_main_0
// INT8-SAME:    mrvl.quantize = "int8"
// INT8-SAME:    mrvl.io_dtype = "f32"
// INT8-SAME:    mrvl.input_scales = [[[IN:.+]] : f32]
// INT8:         mrvl.conv2d {{.*}}mrvl.scale = [[S:[0-9.e+-]+]] : f32
// INT8:         mrvl.maxpool2d {{.*}}mrvl.scale = [[S]] : f32

// -----

// Not lowered: a CPU sub-graph is left alone.

func.func @cpu_main_0(%x: tensor<1x4xf32>) -> tensor<1x4xf32> attributes {mrvl.target = "cpu"} {
  %y = graph.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %y : tensor<1x4xf32>
}

// CHECK-LABEL: func.func @cpu_main_0
// CHECK-NOT:     mrvl.quantize
// INT8-LABEL:  func.func @cpu_main_0
// INT8-NOT:      mrvl.quantize
