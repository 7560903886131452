"""One router per area; `shared` holds what every route does before it forwards."""
