module durableceiling

go 1.22
