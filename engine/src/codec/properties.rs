//! v5 properties: identifiers, wire types, which packet allows which. (STUB)
