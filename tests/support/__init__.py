"""What the tests share besides fixtures: request builders, callers, tools, stand-ins for
MongoDB and spaceone-api. No test module imports another; they import from here."""
