import CDeflate

/// Request bodies compressed whole with libdeflate (`Content-Encoding: gzip`).
public enum ContentEncoding {
    /// `bytes` as one gzip member (compression level 6, zlib's default).
    public static func gzip(_ bytes: [UInt8]) -> [UInt8] {
        guard let compressor = libdeflate_alloc_compressor(6) else { preconditionFailure("libdeflate_alloc_compressor failed (out of memory)") }
        defer { libdeflate_free_compressor(compressor) }
        let bound = libdeflate_gzip_compress_bound(compressor, bytes.count)
        var output = [UInt8](repeating: 0, count: bound)
        let size = bytes.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { out in
                libdeflate_gzip_compress(compressor, input.baseAddress, input.count, out.baseAddress, out.count)
            }
        }
        // The bound is libdeflate's worst case for this input: compression cannot fail.
        precondition(size > 0, "libdeflate_gzip_compress exceeded its own bound")
        output.removeSubrange(size...)
        return output
    }
}
