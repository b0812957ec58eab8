import Foundation

/// A `-batch` file's text: standard input for `-`, else the file, which must be UTF-8.
enum BatchFile {
    /// Why a batch file has no text, in words an operator acts on.
    enum Problem: Error, CustomStringConvertible {
        case directory
        case notUTF8(line: Int)
        case unopenable(errno: Int32)

        var description: String {
            switch self {
            case .directory: "it is a directory, not a file of commands"
            case .notUTF8(let line): "line \(line) is not UTF-8 text"
            case .unopenable(let errno): String(cString: strerror(errno))
            }
        }
    }

    static func text(at path: String) throws(CommandError) -> String {
        do {
            if path == "-" { return try decoded(FileHandle.standardInput.readDataToEndOfFile()) }
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                throw Problem.directory
            }
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { throw Problem.unopenable(errno: errno) }
            let file = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
            return try decoded(file.readDataToEndOfFile())
        } catch {
            throw .unreadableFile(path: path, error)
        }
    }

    /// The bytes as text; the first line that is not UTF-8 named.
    private static func decoded(_ bytes: Data) throws(Problem) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        let bad = lines.firstIndex { String(validating: $0, as: UTF8.self) == nil } ?? 0
        throw .notUTF8(line: bad + 1)
    }
}
