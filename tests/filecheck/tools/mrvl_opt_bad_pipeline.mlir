// A malformed pipeline or an unknown pass option gives one error line and exit status 2, no traceback.
// RUN: not mrvl-opt -p nope %s 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: not mrvl-opt -p 'graph-cleanup{bogus=1}' %s 2>&1 | filecheck %s --check-prefix=OPTION
// RUN: not mrvl-opt -p 'canonicalize{x' %s 2>&1 | filecheck %s --check-prefix=SYNTAX

// UNKNOWN: mrvl-opt: error: invalid pass pipeline: Unrecognized passes: ['nope']
// UNKNOWN-NOT: Traceback
// OPTION: mrvl-opt: error: invalid pass pipeline: Provided arguments ["bogus"] not found
// OPTION-NOT: Traceback
// SYNTAX: mrvl-opt: error: invalid pass pipeline: Error parsing pass pipeline specification
// SYNTAX-NOT: Traceback

builtin.module {}
