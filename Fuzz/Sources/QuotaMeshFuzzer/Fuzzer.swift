import QuotaMeshFuzzing

/// libFuzzer's entry point: one input, run through the target its first byte selects.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let data, count > 0 else { return 0 }
    FuzzTargets.run(Array(UnsafeBufferPointer(start: data, count: count)))
    return 0
}
