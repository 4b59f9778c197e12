// RUN: mrvl-opt %s -p 'mrvl-tile-split{num_tiles=2}' --split-input-file | filecheck %s
// RUN: mrvl-opt %s -p 'mrvl-tile-split{num_tiles=8}' --split-input-file | filecheck %s --check-prefix=EIGHT

// A conv splits its output rows; a boundary falls on a multiple of 16 bytes of the output
// (a row of 4 x 3 fp16 is 24 bytes, so rows go in pairs: 2 + 2).  FC splits its output
// channels; a reshape moves no data.

func.func @tvmgen_mrvl_main_0(%x: tensor<1x4x4x2xf32>) -> tensor<1x16xf32> attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<3x1x1x2xf32>
  %y = mrvl.conv2d %x, %w {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 0, 0, 0, 0>, strides = array<i64: 1, 1>} : (tensor<1x4x4x2xf32>, tensor<3x1x1x2xf32>) -> tensor<1x4x4x3xf32>
  %f = mrvl.reshape %y {layer_name = "tvmgen_mrvl_main_2"} : (tensor<1x4x4x3xf32>) -> tensor<1x48xf32>
  %v = graph.constant dense<1.000000e+00> : tensor<16x48xf32>
  %z = mrvl.fc %f, %v {activation = "none", layer_name = "tvmgen_mrvl_main_3"} : (tensor<1x48xf32>, tensor<16x48xf32>) -> tensor<1x16xf32>
  func.return %z : tensor<1x16xf32>
}

// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK-SAME:    mrvl.num_tiles = 2 : i64
// CHECK:         mrvl.conv2d {{.*}}mrvl.split = "rows", mrvl.tiles = array<i64: 0, 2, 2, 4>
// CHECK:         mrvl.reshape {{.*}}mrvl.split = "none"
// CHECK:         mrvl.fc {{.*}}mrvl.split = "channels", mrvl.tiles = array<i64: 0, 8, 8, 16>

// With 8 tiles there is not enough work: the last tiles get empty ranges.
// EIGHT:         mrvl.conv2d {{.*}}mrvl.tiles = array<i64: 0, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4>
// EIGHT:         mrvl.fc {{.*}}mrvl.tiles = array<i64: 0, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16>

// -----

// Weight-heavy convs on small images: a row split would load all the weights on every tile,
// so the costed choice splits output channels (8 fp16 channels = one 16-byte granule per
// tile), or, for the second conv at 8 tiles, a grid of 2 row bands x 4 channel ranges
// (four values per tile: rows, then channels).

func.func @tvmgen_mrvl_main_0(%x: tensor<1x2x2x64xf32>, %x2: tensor<1x4x4x32xf32>) -> (tensor<1x2x2x64xf32>, tensor<1x4x4x32xf32>) attributes {mrvl.target = "accelerator"} {
  %w = graph.constant dense<5.000000e-01> : tensor<64x3x3x64xf32>
  %y = mrvl.conv2d %x, %w {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_1", pads = array<i64: 1, 1, 1, 1>, strides = array<i64: 1, 1>} : (tensor<1x2x2x64xf32>, tensor<64x3x3x64xf32>) -> tensor<1x2x2x64xf32>
  %w2 = graph.constant dense<5.000000e-01> : tensor<32x3x3x32xf32>
  %y2 = mrvl.conv2d %x2, %w2 {activation = "none", dilations = array<i64: 1, 1>, groups = 1 : i64, layer_name = "tvmgen_mrvl_main_2", pads = array<i64: 1, 1, 1, 1>, strides = array<i64: 1, 1>} : (tensor<1x4x4x32xf32>, tensor<32x3x3x32xf32>) -> tensor<1x4x4x32xf32>
  func.return %y, %y2 : tensor<1x2x2x64xf32>, tensor<1x4x4x32xf32>
}

// CHECK-LABEL: func.func @tvmgen_mrvl_main_0
// CHECK:         mrvl.conv2d {{.*}}mrvl.split = "channels", mrvl.tiles = array<i64: 0, 32, 32, 64>
// CHECK:         mrvl.conv2d {{.*}}mrvl.split = "channels", mrvl.tiles = array<i64: 0, 16, 16, 32>

// EIGHT:         func.func @tvmgen_mrvl_main_0(%{{.*}}: tensor<1x2x2x64xf32>
// EIGHT:         mrvl.conv2d {{.*}}mrvl.split = "channels", mrvl.tiles = array<i64: 0, 8, 8, 16, 16, 24, 24, 32, 32, 40, 40, 48, 48, 56, 56, 64>
// EIGHT:         mrvl.conv2d {{.*}}mrvl.split = "grid", mrvl.tiles = array<i64: 0, 2, 0, 8, 0, 2, 8, 16, 0, 2, 16, 24, 0, 2, 24, 32, 2, 4, 0, 8, 2, 4, 8, 16, 2, 4, 16, 24, 2, 4, 24, 32>

// -----

// Not lowered: a CPU sub-graph is left alone.

func.func @cpu_main_0(%x: tensor<1x4xf32>) -> tensor<1x4xf32> attributes {mrvl.target = "cpu"} {
  %y = graph.relu %x : (tensor<1x4xf32>) -> tensor<1x4xf32>
  func.return %y : tensor<1x4xf32>
}

// CHECK-LABEL: func.func @cpu_main_0
// CHECK-NOT:     mlip.
