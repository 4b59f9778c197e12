// RUN: not mrvl-opt %s -p 'mrvl-partition{mode=bogus}' 2>&1 | filecheck %s --check-prefix=MODE
// RUN: not mrvl-opt %s -p 'mrvl-partition{cpu-layers=conv9}' 2>&1 | filecheck %s --check-prefix=NAME
// RUN: not mrvl-opt %s -p 'mrvl-partition{max-layers=abc}' 2>&1 | filecheck %s --check-prefix=TYPE
// RUN: not mrvl-opt %s -p 'mrvl-partition{bogus=1}' 2>&1 | filecheck %s --check-prefix=UNKNOWN

// Invalid options give one clear line (exit status 2), never a traceback.

func.func @main(%x: tensor<1x4xf32>) -> tensor<1x2xf32> {
  %w = graph.constant dense<5.000000e-01> : tensor<2x4xf32>
  %0 = mrvl.fc %x, %w {layer_name = "tvmgen_mrvl_main_0", activation = "relu"} : (tensor<1x4xf32>, tensor<2x4xf32>) -> tensor<1x2xf32>
  func.return %0 : tensor<1x2xf32>
}

// MODE: mrvl-opt: error: mrvl-partition: invalid mode "bogus", expected one of ['default', 'rfc-first-revision']
// MODE-NOT: Traceback
// NAME: mrvl-opt: error: mrvl-partition: unknown layer or node name(s) ['conv9'] in cpu-layers; layers are ['tvmgen_mrvl_main_0']
// NAME-NOT: Traceback
// TYPE: mrvl-opt: error: mrvl-partition: invalid option: Incompatible types: given ('abc',), expected <class 'int'>
// TYPE-NOT: Traceback
// UNKNOWN: mrvl-opt: error: mrvl-partition: invalid option: Provided arguments ["bogus"] not found
// UNKNOWN-NOT: Traceback
