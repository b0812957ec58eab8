// The assembler lives here; see Instruction.swift.
