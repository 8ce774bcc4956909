/// Name and version of this product, for `--version` and the `User-Agent` header.
public enum ProductInfo {
    /// The product name.
    public static let name = "defender-alertd"
    /// The release version.
    public static let version = "0.1.0"
}
