import FoundationEssentials
import Glibc
import Packets

/// A `-batch` file's text: standard input for `-`, else the file, which must be UTF-8.
enum BatchFile {
    /// Why a batch file has no text, in words an operator acts on.
    enum Problem: Error, CustomStringConvertible {
        case directory
        case notUTF8(line: Int)
        case unopenable(errno: Int32)
        case unreadable(errno: Int32)

        var description: String {
            switch self {
            case .directory: "it is a directory, not a file of commands"
            case .notUTF8(let line): "line \(line) is not UTF-8 text"
            case .unopenable(let errno), .unreadable(let errno): String(cString: strerror(errno))
            }
        }
    }

    static func text(at path: String) throws(CommandError) -> String {
        do {
            if path == "-" { return try decoded(contents(of: STDIN_FILENO)) }
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw Problem.unopenable(errno: errno) }
            defer { close(descriptor) }
            var status = stat()
            if fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFDIR { throw Problem.directory }
            return try decoded(contents(of: descriptor))
        } catch {
            throw .unreadableFile(path: path, error)
        }
    }

    /// Everything left to read from `descriptor`.
    private static func contents(of descriptor: Int32) throws(Problem) -> [UInt8] {
        do {
            return try FileBytes.contents(of: descriptor)
        } catch {
            throw .unreadable(errno: error.errno)
        }
    }

    /// The bytes as text; the first line that is not UTF-8 named.
    private static func decoded(_ bytes: [UInt8]) throws(Problem) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        let bad = lines.firstIndex { String(validating: $0, as: UTF8.self) == nil } ?? 0
        throw .notUTF8(line: bad + 1)
    }
}
