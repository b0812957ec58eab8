import FlowRules
