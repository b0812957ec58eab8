import FlowRules

/// The commands print JSON with FlowRules' printer, in the same key order as `filter show -j`.
typealias JSON = JSONValue
