// The coordinator tests: JobFileTests.swift and PlannerTests.swift.
