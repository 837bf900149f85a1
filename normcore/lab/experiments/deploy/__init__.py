"""The Deploy & port page's experiments: folding BatchNorm, porting conventions, precision."""
