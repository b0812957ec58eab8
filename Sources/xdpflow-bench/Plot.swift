import Foundation

/// The report's curves as an SVG: one chart per pair of axes, a line per curve, each point
/// at its median with a bar from min to max. An x axis spanning 16x or more is logarithmic.
struct Plot {
    var charts: [[Curve]]

    init(_ curves: [Curve]) {
        var charts: [[Curve]] = []
        for curve in curves {
            if let index = charts.firstIndex(where: { $0[0].xLabel == curve.xLabel && $0[0].yLabel == curve.yLabel }) {
                charts[index].append(curve)
            } else {
                charts.append([curve])
            }
        }
        self.charts = charts
    }

    static let width = 720.0, height = 400.0
    static let margin = (left: 70.0, right: 200.0, top: 30.0, bottom: 50.0)
    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    var svg: String {
        let body = charts.enumerated().map { index, chart in
            "<g transform=\"translate(0,\(Self.height * Double(index)))\">\n\(Self.chart(chart))</g>"
        }.joined(separator: "\n")
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(Self.width))" \
            height="\(Int(Self.height * Double(charts.count)))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            \(body)
            </svg>

            """
    }

    private static func chart(_ curves: [Curve]) -> String {
        let points = curves.flatMap(\.points)
        let xs = points.map(\.x), ys = points.map(\.y.max)
        let (xMin, xMax) = (xs.min() ?? 0, xs.max() ?? 1)
        let logarithmic = xMin > 0 && xMax / xMin >= 16
        let yMax = niceCeiling(ys.max() ?? 1)
        let plotWidth = width - margin.left - margin.right, plotHeight = height - margin.top - margin.bottom
        func x(_ value: Double) -> Double {
            let position = logarithmic ? (log2(value) - log2(xMin)) / max(log2(xMax) - log2(xMin), 1e-9)
                : (value - xMin) / max(xMax - xMin, 1e-9)
            return margin.left + position * plotWidth
        }
        func y(_ value: Double) -> Double { margin.top + plotHeight * (1 - value / yMax) }
        func number(_ value: Double) -> String { value.formatted(1) }

        var parts: [String] = []
        parts.append("<text x=\"\(number(margin.left))\" y=\"18\" font-weight=\"bold\">"
                     + "\(escaped(curves[0].yLabel)) against \(escaped(curves[0].xLabel))</text>")
        // Axes, grid and ticks.
        let bottom = margin.top + plotHeight
        parts.append("<line x1=\"\(number(margin.left))\" y1=\"\(number(bottom))\" x2=\"\(number(margin.left + plotWidth))\" "
                     + "y2=\"\(number(bottom))\" stroke=\"black\"/>")
        parts.append("<line x1=\"\(number(margin.left))\" y1=\"\(number(margin.top))\" x2=\"\(number(margin.left))\" "
                     + "y2=\"\(number(bottom))\" stroke=\"black\"/>")
        for step in 0 ... 5 {
            let value = yMax * Double(step) / 5
            parts.append("<line x1=\"\(number(margin.left))\" y1=\"\(number(y(value)))\" x2=\"\(number(margin.left + plotWidth))\" "
                         + "y2=\"\(number(y(value)))\" stroke=\"#ddd\"/>")
            parts.append("<text x=\"\(number(margin.left - 6))\" y=\"\(number(y(value) + 4))\" text-anchor=\"end\">"
                         + "\(tick(value))</text>")
        }
        for value in Set(xs).sorted() {
            parts.append("<text x=\"\(number(x(value)))\" y=\"\(number(bottom + 16))\" text-anchor=\"middle\">"
                         + "\(tick(value))</text>")
        }
        parts.append("<text x=\"\(number(margin.left + plotWidth / 2))\" y=\"\(number(height - 12))\" "
                     + "text-anchor=\"middle\">\(escaped(curves[0].xLabel))\(logarithmic ? " (log scale)" : "")</text>")
        parts.append("<text transform=\"translate(16,\(number(margin.top + plotHeight / 2))) rotate(-90)\" "
                     + "text-anchor=\"middle\">\(escaped(curves[0].yLabel))</text>")
        // Curves, with min-max bars, and the legend.
        for (index, curve) in curves.enumerated() {
            let color = colors[index % colors.count]
            let line = curve.points.map { "\(number(x($0.x))),\(number(y($0.y.median)))" }.joined(separator: " ")
            parts.append("<polyline points=\"\(line)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>")
            for point in curve.points {
                parts.append("<line x1=\"\(number(x(point.x)))\" y1=\"\(number(y(point.y.min)))\" x2=\"\(number(x(point.x)))\" "
                             + "y2=\"\(number(y(point.y.max)))\" stroke=\"\(color)\"/>")
                parts.append("<circle cx=\"\(number(x(point.x)))\" cy=\"\(number(y(point.y.median)))\" r=\"3\" "
                             + "fill=\"\(color)\"/>")
            }
            let legendY = margin.top + 10 + 18 * Double(index)
            let legendX = margin.left + plotWidth + 14
            parts.append("<line x1=\"\(number(legendX))\" y1=\"\(number(legendY))\" x2=\"\(number(legendX + 18))\" "
                         + "y2=\"\(number(legendY))\" stroke=\"\(color)\" stroke-width=\"2\"/>")
            parts.append("<text x=\"\(number(legendX + 24))\" y=\"\(number(legendY + 4))\">\(escaped(curve.name))</text>")
        }
        return parts.joined(separator: "\n") + "\n"
    }

    /// The smallest 1, 2 or 5 times a power of ten at or above `value`.
    private static func niceCeiling(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        let power = pow(10, floor(log10(value)))
        return [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= value }!
    }

    private static func tick(_ value: Double) -> String {
        value == value.rounded() ? Int(value).grouped : value.formatted(1)
    }

    private static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}
