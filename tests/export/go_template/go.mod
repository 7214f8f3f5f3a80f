module moltingtemplate

go 1.19
